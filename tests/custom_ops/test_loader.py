"""custom_ops.loader: switches, source selection, fingerprints, failures as one log line."""
import logging
import os

import pytest

from custom_ops import build, loader


@pytest.fixture(autouse=True)
def reset_switch(monkeypatch):
    monkeypatch.delenv(loader.ENV_DISABLE, raising=False)


def make_op(root, name, files):
    folder = root / name
    folder.mkdir(parents=True)
    for filename, text in files.items():
        (folder / filename).write_text(text)
    return loader.OpLibraryLoader(str(root), str(root / "_build"))


def test_the_machine_wide_opt_out(monkeypatch):
    assert loader.enabled()
    monkeypatch.setenv(loader.ENV_DISABLE, "1")
    assert not loader.enabled()
    monkeypatch.setenv(loader.ENV_DISABLE, "0")
    assert loader.enabled()


def test_disabled_returns_none_and_logs_once(tmp_path, caplog, monkeypatch):
    ops = make_op(tmp_path, "dummy", {"dummy.cc": "int x;\n"})
    monkeypatch.setenv(loader.ENV_DISABLE, "1")
    with caplog.at_level(logging.WARNING, logger=loader.__name__):
        assert ops.load("dummy") is None and ops.load("dummy") is None
    assert len(caplog.records) == 1 and "disabled" in caplog.records[0].getMessage()
    assert not os.path.exists(ops.library_path("dummy"))


def test_failed_build_falls_back_with_one_line(tmp_path, caplog):
    ops = make_op(tmp_path, "broken", {"broken.cc": "#error this kernel does not compile\n"})
    with caplog.at_level(logging.WARNING, logger=loader.__name__):
        assert ops.load("broken") is None and ops.load("broken") is None
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "broken" in message and "fallback" in message and "\n" not in message
    assert "g++ failed" in ops.failure("broken")
    assert ops.load("missing") is None and "no C++ sources" in ops.failure("missing")


def test_sources_exclude_cuda(tmp_path):
    ops = make_op(tmp_path, "op", {"op.cc": "", "kernel.cu.cc": "", "kernel2.cu": "", "common.h": ""})
    assert [os.path.basename(p) for p in ops.sources("op")] == ["op.cc"]
    assert [os.path.basename(p) for p in ops.cuda_sources("op")] == ["kernel.cu.cc", "kernel2.cu"]


def test_fingerprint_tracks_sources_and_headers(tmp_path):
    ops = make_op(tmp_path, "op", {"op.cc": "int a;\n", "op.h": "int b;\n"})
    first = ops.fingerprint("op")
    assert ops.is_stale("op")
    os.makedirs(ops.build_dir)
    open(ops.library_path("op"), "w").close()
    with open(ops.library_path("op") + ".sha256", "w") as handle:
        handle.write(first)
    assert not ops.is_stale("op")
    (tmp_path / "op" / "op.h").write_text("int c;\n")
    assert ops.fingerprint("op") != first and ops.is_stale("op")
    assert ops.fingerprint("op", use_cuda=True) != ops.fingerprint("op")


def test_real_op_loads_and_is_cached():
    module = loader.load("roi_align")
    assert module is not None, loader.failure("roi_align")
    assert loader.load("roi_align") is module
    assert hasattr(module, "multilevel_roi_align") and hasattr(module, "multilevel_roi_align_grad")
    assert not loader.default_loader().is_stale("roi_align")


def test_build_command_lists_and_builds(capsys):
    assert "roi_align" in build.op_names()
    assert build.main(["roi_align"]) == 0
    assert "roi_align" in capsys.readouterr().out

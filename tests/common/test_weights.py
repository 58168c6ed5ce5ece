"""Published weights by name (common.weights): registry, download/cache/verify/resume, ``--pretrained`` end to end.

No test reaches the internet: a server on 127.0.0.1 (started here) serves fixture files, reached through
``TF2VISION_WEIGHTS_URL`` (the mirror setting); ``TF2VISION_HOME`` is a fresh folder per test.
"""
import dataclasses
import hashlib
import logging
import os

import numpy as np
import pytest

import main as entry
from common.weights import download, registry
from weights_server import Server as _Server

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pth", "zip.pth")
NGC_NPZ = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "fixtures", "ngc_efficientnet",
                       "efficientnet-b0_random_init.npz")


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A server with ``weights.pth`` (the zip fixture), a cache home and a registered test entry for it."""
    data = open(FIXTURE, "rb").read()
    server = _Server({"weights.pth": data})
    monkeypatch.setenv(download.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(download.MIRROR_ENV, server.url)
    entry_ = registry.Weights("test-weights", "https://example.invalid/weights.pth", ("efficientnet-b0",), "ngc-pth",
                              "fixture", 10, "none", "test", sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(registry.WEIGHTS, entry_.name, entry_)
    yield server, entry_, data
    server.close()


def test_download_is_verified_cached_and_not_requested_again(served):
    server, entry_, data = served
    path = download.fetch(entry_, progress=False)
    assert open(path, "rb").read() == data and path == download.cache_path(entry_)
    assert open(path + ".sha256").read().split()[0] == hashlib.sha256(data).hexdigest()
    assert not os.path.exists(path + ".part")
    assert download.fetch(entry_, progress=False) == path
    assert len(server.requests) == 1  # the second run made no request


def test_a_corrupt_download_is_deleted_and_named(served):
    server, entry_, data = served
    server.files["weights.pth"] = data[:-1] + b"X"
    with pytest.raises(download.DownloadError, match="sha256 .* is not the published") as err:
        download.fetch(entry_, progress=False)
    assert "deleted" in str(err.value) and "\n" not in str(err.value)
    path = download.cache_path(entry_)
    assert not os.path.exists(path) and not os.path.exists(path + ".part")


def test_an_interrupted_download_resumes_where_it_stopped(served):
    server, entry_, data = served
    server.cut_after = 2000
    with pytest.raises(download.DownloadError, match="run again to resume"):
        download.fetch(entry_, progress=False)
    assert os.path.getsize(download.cache_path(entry_) + ".part") == 2000
    path = download.fetch(entry_, progress=False)
    assert open(path, "rb").read() == data
    assert server.requests[-1] == ("/weights.pth", "bytes=2000-")  # only the rest was asked for


def test_offline_is_one_line_naming_the_url_and_the_path_to_fill_by_hand(served, monkeypatch):
    server, entry_, _ = served
    server.close()
    with pytest.raises(download.DownloadError) as err:
        download.fetch(entry_, progress=False)
    message = str(err.value)
    assert server.url + "/weights.pth" in message and download.cache_path(entry_) in message and "\n" not in message


def test_a_file_put_there_by_hand_is_verified_once(served):
    server, entry_, data = served
    path = download.cache_path(entry_)
    os.makedirs(os.path.dirname(path))
    open(path, "wb").write(data[:100])  # wrong file
    with pytest.raises(download.DownloadError, match="is not the published"):
        download.fetch(entry_, progress=False)
    open(path, "wb").write(data)
    assert download.fetch(entry_, progress=False) == path and not server.requests


def test_publisher_md5_is_checked(served, monkeypatch):
    _, entry_, _ = served
    wrong = dataclasses.replace(entry_, sha256=None, md5="0" * 32)
    with pytest.raises(download.DownloadError, match="md5"):
        download.fetch(wrong, progress=False)


def test_progress_is_reported_on_stderr(served, capsys):
    download.fetch(served[1], progress=True)
    assert "downloading test-weights: 100%" in capsys.readouterr().err


# --------------------------------------------------------------------- registry and command line
def test_registry_names_aliases_and_defaults():
    assert registry.get("maskrcnn_resnet50_fpn_coco").name == "torchvision-maskrcnn-resnet50-fpn-coco"
    assert registry.for_model("efficientnet-b0").name == "nvidia-efficientnet-b0"
    assert registry.for_model("efficientnet-b7").name == "keras-efficientnet-b7"
    assert registry.for_model("mask-rcnn").config == {"task.preset": "torchvision"}
    for name, weights in registry.WEIGHTS.items():
        assert weights.fits and weights.metric and weights.licence and weights.url.startswith("https://"), name
        assert weights.sha256 or weights.md5 or weights.format == "ngc-pth", name  # NGC publishes no digest
    for model, name in registry.DEFAULTS.items():
        assert model in registry.WEIGHTS[name].fits
    with pytest.raises(SystemExit, match="fits mask-rcnn-torchvision"):
        registry.for_model("efficientnet-b0", "maskrcnn_resnet50_fpn_coco")
    with pytest.raises(SystemExit, match="no published weights for resnet50"):
        registry.for_model("resnet50")


def test_weights_list_and_path(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv(download.HOME_ENV, str(tmp_path))
    assert entry.main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "nvidia-efficientnet-b0" in out and "box AP 37.9 / mask AP 34.6" in out and str(tmp_path) in out
    assert entry.main(["weights", "path", "nvidia-efficientnet-b0"]) == 0
    assert os.path.join(str(tmp_path), "weights", "nvidia_efficientnet-b0_210412.pth") in capsys.readouterr().out


@pytest.mark.parametrize("argv, name, data", [
    (["eval", "--model", "efficientnet-b0", "--pretrained", "DATA"], "default", "DATA"),
    (["eval", "--model", "efficientnet-b0", "--pretrained", "keras-efficientnet-b0", "DATA"], "keras-efficientnet-b0",
     "DATA"),
    (["eval", "--model", "efficientnet-b0", "DATA", "--pretrained"], "default", "DATA"),
    (["train", "--model", "efficientnet-b0", "--pretrained=nvidia_efficientnet_b0", "DATA"], "nvidia_efficientnet_b0",
     "DATA"),
])
def test_pretrained_takes_a_name_only_when_it_names_weights(argv, name, data):
    from common.command import cli

    invocation = cli.parse(argv)
    assert invocation.options.pretrained == name and invocation.experiment.data.data_dir == data


@pytest.mark.parametrize("argv, name, filename", [
    (["eval", "--model", "efficientnet-b0", "--pretrained", "{tmp}"], "nvidia-efficientnet-b0",
     "nvidia_efficientnet-b0_210412.pth"),
    (["infer", "--model", "mask-rcnn", "--pretrained", "{tmp}"], "torchvision-maskrcnn-resnet50-fpn-coco",
     "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"),
])
def test_offline_pretrained_is_one_line(capsys, monkeypatch, tmp_path, argv, name, filename):
    monkeypatch.setenv(download.HOME_ENV, str(tmp_path))
    monkeypatch.setenv(download.MIRROR_ENV, "http://127.0.0.1:9")  # discard port: nothing listens
    argv = [a.format(tmp=tmp_path) for a in argv] + ["--workspace", str(tmp_path / "ws")]
    assert entry.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot download {name} from http://127.0.0.1:9/{filename}" in err[0]
    assert os.path.join(str(tmp_path), "weights", filename) in err[0]


@pytest.mark.skipif(not os.path.exists(NGC_NPZ), reason="needs ../shared/fixtures (the NGC-layout B0 fixture)")
def test_eval_pretrained_end_to_end_through_the_local_server(tmp_path, monkeypatch, capsys, caplog):
    """``main.py eval --model efficientnet-b0 --pretrained DATA``: NGC-layout B0 weights fetched from the server,
    loaded with symmetric padding, 1000-class head, evaluated; a second run makes no request."""
    from dataset.make_synthetic_imagefolder import make_imagefolder

    data = open(NGC_NPZ, "rb").read()
    server = _Server({"nvidia_efficientnet-b0_210412.npz": data})
    monkeypatch.setenv(download.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(download.MIRROR_ENV, server.url)
    real = registry.WEIGHTS["nvidia-efficientnet-b0"]
    monkeypatch.setitem(registry.WEIGHTS, real.name, dataclasses.replace(
        real, url=real.url.replace(".pth", ".npz"), sha256=hashlib.sha256(data).hexdigest()))
    folder = str(tmp_path / "images")  # ImageNet's shape: 1000 class folders (images in the first 2)
    make_imagefolder(folder, num_classes=2, train_per_class=1, val_per_class=2, image_size=64)
    for split in ("train", "val"):
        for index in range(2, 1000):
            os.makedirs(os.path.join(folder, split, f"{index:04d}_empty"))
    argv = ["eval", "--model", "efficientnet-b0", "--pretrained", folder, "-b", "2", "--workspace",
            str(tmp_path / "ws")]
    try:
        with caplog.at_level(logging.INFO):
            assert entry.main(argv) == 0
            assert entry.main(argv) == 0
        import efficientnet_tf2  # the Python API: the same weights, cached (no request), a fresh 10-class head

        model = efficientnet_tf2.create_model("efficientnet-b0", pretrained=True, num_classes=10, image_size=64)
    finally:
        server.close()
    assert model.output_shape == (None, 10) and model.get_layer("stem_pad") is not None
    np.testing.assert_array_equal(model.get_layer("stem_conv").kernel.numpy(),
                                  np.load(NGC_NPZ)["stem.conv.weight"].transpose(2, 3, 1, 0))
    captured = capsys.readouterr()
    assert captured.out.count('"val.top1"') == 2 and len(server.requests) == 1
    loaded = [r.getMessage() for r in caplog.records if "NGC tensors" in r.getMessage()]
    assert len(loaded) == 2 and all(m.startswith("imported 311 NGC tensors") for m in loaded), loaded
    assert os.path.isfile(os.path.join(str(tmp_path / "home"), "weights", "nvidia_efficientnet-b0_210412.npz"))


"""The torch-free ``.pth`` reader (common.io.pth): torch's own files read exactly; hostile files run nothing.

The fixtures were written by torch 2.14 (``scripts/make_pth_fixtures.py``): the same checkpoint in
torch's zip layout and in its legacy layout, and ``expected.npz`` = torch's own ``.numpy()`` of every tensor.
"""
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from common.io import pth
from common.io.state_dict import StateDictError, read_state_dict

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pth")


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(FIXTURES, "expected.npz")) as archive:
        return {k: archive[k] for k in archive.files}


@pytest.mark.parametrize("layout", ["zip.pth", "legacy.pth"])
def test_every_tensor_equals_torchs_own(layout, expected):
    loaded = pth.load(os.path.join(FIXTURES, layout))
    assert {k: loaded[k] for k in ("epoch", "arch", "best_top1")} == {"epoch": 3, "arch": "fixture", "best_top1": 0.5}
    state = loaded["state_dict"]
    assert list(state) == list(expected)
    for key, want in expected.items():
        assert state[key].dtype == want.dtype and state[key].shape == want.shape, key
        np.testing.assert_array_equal(state[key], want, err_msg=key)


def test_read_state_dict_unwraps_a_training_checkpoint(expected):
    state = read_state_dict(os.path.join(FIXTURES, "zip.pth"))
    assert set(state) == set(expected)
    np.testing.assert_array_equal(state["transposed"], expected["transposed"])


def test_contiguous_tensors_are_views_of_the_storage_bytes():
    state = pth.load(os.path.join(FIXTURES, "zip.pth"))["state_dict"]
    assert state["i64"].base is not None and not state["i64"].flags.writeable  # not copied
    assert state["transposed"].flags.c_contiguous  # a non-contiguous view is copied once


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _zip_checkpoint(path, payload: bytes, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compress) as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")


def _legacy_header() -> bytes:
    return b"".join(pickle.dumps(v, protocol=2) for v in (pth.LEGACY_MAGIC, pth.LEGACY_PROTOCOL, {"little_endian": True}))


@pytest.mark.parametrize("layout", ["zip", "legacy", "bare pickle"])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, layout):
    marker = tmp_path / "ran"
    payload = pickle.dumps({"weight": _RunsCode(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    if layout == "zip":
        _zip_checkpoint(path, payload)
    else:
        path.write_bytes((_legacy_header() if layout == "legacy" else b"") + payload)
    with pytest.raises(pth.PthError, match=r"refused to load (posix|os)\.system") as err:
        pth.load(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [("builtins", "eval"), ("builtins", "getattr"), ("subprocess", "Popen"),
                                          ("torch", "load"), ("numpy", "load")])
def test_only_tensor_globals_are_answered(tmp_path, module, name):
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x01\x00\x00\x001\x85R."
    path = tmp_path / "global.pth"
    _zip_checkpoint(path, payload)
    with pytest.raises(pth.PthError, match=f"refused to load {module}.{name}"):
        pth.load(str(path))


def _tensor_pickle(size, stride, numel_in_storage) -> bytes:
    """A zip ``data.pkl`` of ``{"w": _rebuild_tensor_v2(storage 0, 0, size, stride)}`` written by hand."""

    rebuild = b"ctorch._utils\n_rebuild_tensor_v2\n"
    storage = b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu" + \
        b"J" + struct.pack("<i", numel_in_storage) + b"tQ"
    shape = b"(" + b"".join(b"J" + struct.pack("<i", s) for s in size) + b"t"
    strides = b"(" + b"".join(b"J" + struct.pack("<i", s) for s in stride) + b"t"
    args = b"(" + storage + b"K\x00" + shape + strides + b"\x89)t"
    return b"\x80\x02}X\x01\x00\x00\x00w" + rebuild + args + b"Rs."


@pytest.mark.parametrize("size, stride, numel, words", [
    ((4, 4), (4, 1), 8, "does not fit its storage"),          # view past the end
    ((1000, 1000), (0, 0), 1, "does not fit its storage"),    # stride-0 blow-up
])
def test_a_tensor_outside_its_storage_is_refused(tmp_path, size, stride, numel, words):
    path = tmp_path / "bad.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _tensor_pickle(size, stride, numel))
        archive.writestr("archive/data/0", np.zeros(numel, np.float32).tobytes())
    with pytest.raises(pth.PthError, match=words):
        pth.load(str(path))


def test_the_hand_written_tensor_pickle_reads_when_it_fits(tmp_path):
    path = tmp_path / "good.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _tensor_pickle((2, 3), (3, 1), 6))
        archive.writestr("archive/data/0", np.arange(6, dtype=np.float32).tobytes())
    np.testing.assert_array_equal(pth.load(str(path))["w"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_a_decompression_bomb_is_refused_before_it_is_unpacked(tmp_path):
    path = tmp_path / "bomb.pth"
    _zip_checkpoint(path, b"\x80\x02}." + b"\x00" * 50_000_000, compress=zipfile.ZIP_DEFLATED)
    with pytest.raises(pth.PthError, match="more than the file"):
        pth.load(str(path))


@pytest.mark.parametrize("content, words", [
    (b"PK\x03\x04 truncated", "not a readable PyTorch checkpoint"),
    (b"", "not a readable PyTorch checkpoint"),
    (pickle.dumps(12345), "neither a zip archive nor the legacy format"),
])
def test_damaged_files_are_one_line_errors(tmp_path, content, words):
    path = tmp_path / "damaged.pth"
    path.write_bytes(content)
    with pytest.raises(StateDictError, match=words) as err:
        read_state_dict(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_truncated_legacy_storage_is_named(tmp_path):
    data = open(os.path.join(FIXTURES, "legacy.pth"), "rb").read()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:-40])
    with pytest.raises(pth.PthError, match="truncated|not a readable"):
        pth.load(str(path))

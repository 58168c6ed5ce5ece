"""NGC (NVIDIA PyTorch) EfficientNet import: fixture parity, every variant's key list, errors."""
import pathlib
import sys

import numpy as np
import pytest

from common.io import state_dict
from efficientnet_tf2 import ngc, transfer
from efficientnet_tf2.experiments import classifier_config
from efficientnet_tf2.model import build_classifier

FIXTURES = pathlib.Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "ngc_efficientnet"
FIXTURE_B0 = FIXTURES / "efficientnet-b0_random_init.npz"
VARIANTS = ("efficientnet-b0", "efficientnet-b4", "efficientnet-widese-b0", "efficientnet-widese-b4")
_MODELS = {}


def model_for(name):
    """Symmetric-padding model of ``name`` with any input size, built once per session."""
    if name not in _MODELS:
        config = classifier_config(name, padding="symmetric")
        _MODELS[name] = build_classifier(config, input_shape=(None, None, 3), name=name.replace("-", "_"))
    return _MODELS[name]


def key_list(name):
    """``[(key, shape, dtype)]`` of the fixture's ``<name>_keys.txt`` (skips when absent)."""
    path = FIXTURES / f"{name}_keys.txt"
    if not path.exists():
        pytest.skip(f"shared fixture {path} not present (tests read ../shared; CI has it)")
    rows = []
    for line in path.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(d) for d in shape.strip("()").split(",") if d.strip()), dtype))
    return rows


def synthetic_state(name, seed=0):
    """Random arrays of the listed shapes (``num_batches_tracked`` as int64 scalars)."""
    rng = np.random.default_rng(seed)
    return {key: np.array(7, np.int64) if "int" in dtype else rng.standard_normal(shape).astype(np.float32)
            for key, shape, dtype in key_list(name)}


def test_fixture_parity_b0():
    if not FIXTURE_B0.exists():
        pytest.skip(f"shared fixture {FIXTURE_B0} not present (tests read ../shared; CI has it)")
    model = model_for("efficientnet-b0")
    ngc.load_ngc_checkpoint(model, str(FIXTURE_B0))
    with np.load(FIXTURE_B0) as data:
        images, expected = np.transpose(data["__input_nchw__"], (0, 2, 3, 1)), data["__logits__"]
    logits = model(images, training=False).numpy()
    assert np.max(np.abs(logits - expected)) <= 1e-4


@pytest.mark.parametrize("name", VARIANTS)
def test_every_key_list_imports(name):
    state = synthetic_state(name)
    model = model_for(name)
    result = ngc.load_ngc_state_dict(model, state)
    assert sorted(result.assigned.values()) == sorted(w.name for w in model.weights)
    assert len(result.assigned) == len([k for k in state if not k.endswith("num_batches_tracked")])
    expand = state["layers.1.block0.expand.conv.weight"]  # [O, I, 1, 1]
    np.testing.assert_array_equal(model.get_layer("block2a_expand_conv").kernel.numpy(),
                                  np.transpose(expand, (2, 3, 1, 0)))
    dw = state["layers.2.block1.depsep.conv.weight"]  # [C, 1, 5, 5]
    np.testing.assert_array_equal(model.get_layer("block3b_dw_conv").depthwise_kernel.numpy(),
                                  np.transpose(dw, (2, 3, 0, 1)))
    np.testing.assert_array_equal(model.get_layer("predictions").kernel.numpy(), state["classifier.fc.weight"].T)
    np.testing.assert_array_equal(model.get_layer("top_bn").moving_variance.numpy(),
                                  state["features.bn.running_var"])


def test_conv_weight_lands_in_hwio_order():
    state = synthetic_state("efficientnet-b0")
    state["stem.conv.weight"] = np.arange(32 * 3 * 3 * 3, dtype=np.float32).reshape(32, 3, 3, 3)
    model = model_for("efficientnet-b0")
    ngc.load_ngc_state_dict(model, state)
    kernel = model.get_layer("stem_conv").kernel.numpy()  # [kh, kw, in, out]
    assert kernel[1, 2, 0, 5] == state["stem.conv.weight"][5, 0, 1, 2]


def _error(state, match):
    model = model_for("efficientnet-b0")
    before = model.get_layer("stem_conv").kernel.numpy()
    with pytest.raises(ngc.NgcCheckpointError, match=match) as info:
        ngc.load_ngc_state_dict(model, state)
    np.testing.assert_array_equal(model.get_layer("stem_conv").kernel.numpy(), before)  # all or nothing
    return str(info.value)


def test_missing_key_is_named():
    state = synthetic_state("efficientnet-b0")
    del state["layers.3.block2.se.squeeze.bias"]
    assert "layers.3.block2.se.squeeze.bias" in _error(state, "1 missing key")


def test_extra_key_is_named():
    state = synthetic_state("efficientnet-b0")
    state["layers.7.block0.proj.conv.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    assert "layers.7.block0.proj.conv.weight" in _error(state, "1 unexpected key")


def test_wrong_shape_names_expected_and_found():
    state = synthetic_state("efficientnet-b0")
    state["stem.conv.weight"] = np.zeros((16, 3, 3, 3), np.float32)
    message = _error(state, "shape mismatch")
    assert "stem.conv.weight: expected (32, 3, 3, 3), found (16, 3, 3, 3)" in message


def test_wrong_variant_is_refused():
    state = synthetic_state("efficientnet-widese-b0")
    assert "layers.1.block0.se.squeeze.weight" in _error(state, "expected \\(4, 96\\), found \\(24, 96\\)")


def test_module_prefix_and_wrappers(tmp_path):
    state = synthetic_state("efficientnet-b0", seed=1)
    prefixed = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / "ddp.npz"
    np.savez(path, **prefixed)
    model = model_for("efficientnet-b0")
    ngc.load_ngc_checkpoint(model, str(path))
    np.testing.assert_array_equal(model.get_layer("stem_bn").gamma.numpy(), state["stem.bn.weight"])
    assert state_dict.unwrap_checkpoint({"epoch": 3, "state_dict": {"a": 1}}) == {"a": 1}
    assert state_dict.unwrap_checkpoint({"model": {"b": 2}}) == {"b": 2}


def test_quantizer_entries_are_set_aside():
    state = synthetic_state("efficientnet-b0")
    quant = {"layers.1.block0.expand.conv._input_quantizer._amax": np.array(3.5, np.float32),
             "layers.1.block0.expand.conv._weight_quantizer._amax": np.ones((96, 1, 1, 1), np.float32),
             "layers.1.block1.residual_quantizer._amax": np.array(2.0, np.float32),
             "classifier.fc._input_quantizer._amax": np.array(9.0, np.float32)}
    # Quant models use a 1x1-conv SE (TensorRT friendly): [O, I, 1, 1] instead of Linear [O, I].
    state["layers.0.block0.se.squeeze.weight"] = state["layers.0.block0.se.squeeze.weight"][:, :, None, None]
    model = model_for("efficientnet-b0")
    result = ngc.load_ngc_state_dict(model, {**state, **{f"module.{k}": v for k, v in quant.items()}})
    assert set(result.quantizers) == set(quant)
    by_layer = result.quantizers_by_layer(model)
    assert float(by_layer["block2a_expand_conv"]["_input_quantizer._amax"]) == 3.5
    assert by_layer["block2a_expand_conv"]["_weight_quantizer._amax"].shape == (96, 1, 1, 1)
    assert float(by_layer["predictions"]["_input_quantizer._amax"]) == 9.0
    assert "layers.1.block1" in by_layer
    np.testing.assert_array_equal(model.get_layer("block1a_se_reduce").kernel.numpy(),
                                  state["layers.0.block0.se.squeeze.weight"][:, :, 0, 0].T)


def test_pth_reads_without_torch(monkeypatch):
    """A torch-written checkpoint (tests/fixtures/pth, a training-checkpoint wrapper) reads with torch unimportable."""
    monkeypatch.setitem(sys.modules, "torch", None)
    path = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "pth" / "zip.pth"
    state = ngc.read_state_dict(str(path))
    assert state["conv.weight"].shape == (4, 3, 3, 3) and state["f16"].dtype == np.float32


def test_convert_script_and_pretrained_dispatch(tmp_path):
    from scripts.convert_ngc_checkpoint import main as convert_main

    state = synthetic_state("efficientnet-b0", seed=2)
    source, out = tmp_path / "b0.npz", tmp_path / "b0.weights.h5"
    np.savez(source, **state)
    assert convert_main(["--model", "efficientnet-b0", str(source), str(out)]) == 0
    model = model_for("efficientnet-b0")
    transfer.load_file(model, str(out))  # .h5: the Keras loader
    np.testing.assert_array_equal(model.get_layer("block7a_project_conv").kernel.numpy(),
                                  np.transpose(state["layers.6.block0.proj.conv.weight"], (2, 3, 1, 0)))
    np.savez(source, **synthetic_state("efficientnet-b0", seed=3))
    transfer.load_file(model, str(source))  # .npz: the NGC importer
    assert not np.array_equal(model.get_layer("stem_bn").beta.numpy(), state["stem.bn.bias"])
    assert convert_main(["--model", "efficientnet-b0", str(tmp_path / "absent.npz"), str(out)]) == 2

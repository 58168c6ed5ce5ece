"""``main.py benchmark`` model builders: what each model name times."""
import numpy as np

from efficientnet_tf2 import benchmark, qat


def test_quant_variants_time_the_calibrated_quantized_graph():
    """``efficientnet-quant-b0`` rows time the Q/DQ model (not its float twin), every range calibrated."""
    _, model = benchmark._task_and_model("efficientnet-quant-b0", 32, 10)
    assert qat.is_quantized(model)
    ranges = [float(v.numpy()) for v in model.weights if "amax" in v.name]
    assert len(ranges) > 80 and min(ranges) > 0.0, (len(ranges), min(ranges))
    _, model = benchmark._task_and_model("efficientnet-b0", 32, 10)
    assert not qat.is_quantized(model)
    step = benchmark.make_infer_step("efficientnet-quant-b0", 2, 32, num_classes=10)
    probabilities = step()
    assert probabilities.shape == (2, 10) and np.allclose(probabilities.sum(-1), 1.0, atol=1e-5)

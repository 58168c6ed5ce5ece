"""Numeric precision, loss scaling, TF32 and XLA switches shared by every model.

Policies: ``float32``, ``mixed_float16`` (AMP on NVIDIA GPUs) and
``mixed_bfloat16``. Under a mixed policy, layers compute in half precision,
variables stay float32, and models cast their logits to float32; losses are
always computed in float32. ``mixed_float16`` needs loss scaling: dynamic by
default, static with ``--static-loss-scale N`` as in NVIDIA's recipe.
"""
from __future__ import annotations

import logging
from typing import Optional

import tensorflow as tf
import tf_keras as keras

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
_log = logging.getLogger(__name__)


def resolve_precision(amp: bool = False, bf16: bool = False, precision: Optional[str] = None) -> str:
    """Maps command-line switches to a Keras policy name.

    ``precision`` (one of :data:`POLICIES`, or ``AMP``/``FP32``/``TF32`` as in
    NVIDIA's scripts) wins over the ``amp``/``bf16`` booleans.
    """
    aliases = {"AMP": "mixed_float16", "FP32": "float32", "TF32": "float32", "FP16": "mixed_float16",
               "BF16": "mixed_bfloat16"}
    if precision:
        name = aliases.get(precision.upper(), precision)
        if name not in POLICIES:
            raise ValueError(f"Unknown precision {precision!r}; use one of {POLICIES} or AMP/FP32/TF32")
        return name
    if amp and bf16:
        raise ValueError("--amp and --bf16 are exclusive: pick one mixed precision mode")
    return "mixed_float16" if amp else "mixed_bfloat16" if bf16 else "float32"


def configure_precision(policy: str = "float32", tf32: Optional[bool] = None) -> keras.mixed_precision.Policy:
    """Sets the global Keras dtype policy and the TF32 switch; returns the policy.

    Args:
      policy: one of :data:`POLICIES`.
      tf32: allow TensorFloat-32 matmuls/convolutions on Ampere+ GPUs
        (``None`` leaves TensorFlow's default, which is on).
    """
    if policy not in POLICIES:
        raise ValueError(f"Unknown dtype policy. Received: policy={policy!r}; expected one of {POLICIES}")
    keras.mixed_precision.set_global_policy(policy)
    if tf32 is not None:
        tf.config.experimental.enable_tensor_float_32_execution(tf32)
    if policy == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        _log.warning("mixed_float16 without a GPU runs (slowly) on CPU; use it for testing only")
    return keras.mixed_precision.global_policy()


def wrap_optimizer(optimizer, policy: str, static_loss_scale: Optional[float] = None):
    """Wraps ``optimizer`` in a ``LossScaleOptimizer`` when ``policy`` needs one.

    Dynamic loss scaling by default; ``static_loss_scale`` fixes the scale
    (NVIDIA's ``--static-loss-scale``). bfloat16 and float32 need no scaling.
    """
    if policy != "mixed_float16":
        return optimizer
    if static_loss_scale:
        return keras.mixed_precision.LossScaleOptimizer(optimizer, dynamic=False,
                                                        initial_scale=float(static_loss_scale))
    return keras.mixed_precision.LossScaleOptimizer(optimizer)


def is_loss_scaled(optimizer) -> bool:
    """True when ``optimizer`` is a Keras ``LossScaleOptimizer``."""
    return isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)


def scale_loss(optimizer, loss):
    """``loss`` multiplied by the optimizer's loss scale (identity without one)."""
    return optimizer.get_scaled_loss(loss) if is_loss_scaled(optimizer) else loss


def unscale_gradients(optimizer, grads):
    """Undoes :func:`scale_loss` on gradients (identity without loss scaling)."""
    return optimizer.get_unscaled_gradients(grads) if is_loss_scaled(optimizer) else grads


def compile_step(fn, xla: bool = False, **kwargs):
    """``tf.function`` of a train/eval step, XLA-compiled when ``xla`` is set."""
    return tf.function(fn, jit_compile=bool(xla), **kwargs)

"""Balanced foreground/background sampling with a stateless seed.

Shape glossary
  ...  optional leading batch dimension ``B`` (labels are ``[N]`` or ``[B, N]``)
  N    candidates (anchors or proposals)
  S    ``num_samples`` slots per image (256 anchors for the RPN, 512 RoIs)

Rule (detectron2's ``subsample_labels``, NVIDIA's ``BalancedPositiveNegativeSampler``)
  ``P = min(#fg, int(num_samples * positive_fraction))`` foreground candidates are drawn
  uniformly without replacement, then ``min(#bg, num_samples - P)`` background ones.
  Missing foreground is filled with background; missing background is *not* filled
  with extra foreground, so fewer than ``S`` slots may be valid. Candidates labelled
  -1 are never drawn.

Randomness
  One ``tf.random.stateless_uniform`` key per candidate (drawn for the whole ``[B, N]``
  at once, so images get independent draws); the largest keys win. The algorithm is
  pinned to Philox, so the same labels and ``seed`` give the same sample eagerly, in a
  ``tf.function`` and under XLA (whose default generator differs). Pass a new seed each
  step (e.g. built from the step counter) for fresh draws.
"""
from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf


class Sample(NamedTuple):
    """Result of :func:`sample_balanced`; shapes lose ``B`` when labels were ``[N]``.

    Attributes:
      indices: ``[..., S] int32`` chosen candidates: foreground first, then background,
        then invalid slots (index 0).
      valid: ``[..., S] bool``, which slots hold a sampled candidate.
      mask: ``[..., N] bool``, which candidates were sampled.
      num_positives: ``[...] int32`` foreground slots taken (they lead ``indices``).
    """

    indices: tf.Tensor
    valid: tf.Tensor
    mask: tf.Tensor
    num_positives: tf.Tensor


def _top_candidates(keys: tf.Tensor, is_candidate: tf.Tensor, k: int):
    """Largest-key candidates: ``[B, N]`` -> ``(indices [B, k] int32, found [B, k] bool)``."""
    scores = tf.where(is_candidate, keys, -1.0)
    pad = tf.maximum(k - tf.shape(scores)[1], 0)
    scores = tf.pad(scores, [[0, 0], [0, pad]], constant_values=-1.0)
    values, indices = tf.math.top_k(scores, k=k, sorted=True)
    return indices, values >= 0.0


def _compact(indices: tf.Tensor, valid: tf.Tensor, k: int):
    """Moves valid slots first (stable), keeps ``k``: ``[B, K] -> [B, k]`` each."""
    order = tf.argsort(tf.cast(tf.logical_not(valid), tf.int32), axis=-1, stable=True)[:, :k]
    valid = tf.gather(valid, order, batch_dims=1)
    indices = tf.where(valid, tf.gather(indices, order, batch_dims=1), 0)
    return indices, valid


def indices_to_mask(indices: tf.Tensor, valid: tf.Tensor, num_items) -> tf.Tensor:
    """Scatters sampled slots back onto candidates.

    Args:
      indices: ``[B, S] int32`` candidate indices in ``[0, num_items)``.
      valid: ``[B, S] bool``, slots to scatter.
      num_items: ``N``, python int or scalar int32 tensor.

    Returns:
      ``[B, N] bool``, True where a valid slot points.
    """
    shape = tf.shape(indices)
    batch = tf.broadcast_to(tf.range(shape[0])[:, None], shape)
    coords = tf.stack([batch, indices], axis=-1)
    counts = tf.scatter_nd(coords, tf.cast(valid, tf.int32), tf.stack([shape[0], num_items]))
    return counts > 0


def sample_balanced(labels, num_samples: int, positive_fraction: float, seed) -> Sample:
    """Draws at most ``num_samples`` candidates with a bounded foreground fraction.

    Args:
      labels: ``[N]`` or ``[B, N] int32`` in {1 fg, 0 bg, -1 ignore}.
      num_samples: ``S``, slots per image (python int).
      positive_fraction: upper bound on the foreground share of ``S``.
      seed: ``[2]`` int32/int64 stateless seed.

    Returns:
      A :class:`Sample`.
    """
    if num_samples < 1 or not 0.0 <= positive_fraction <= 1.0:
        raise ValueError("Need num_samples >= 1 and 0 <= positive_fraction <= 1. Received: "
                         f"num_samples={num_samples}, positive_fraction={positive_fraction}")
    labels = tf.convert_to_tensor(labels, tf.int32)
    unbatched = labels.shape.rank == 1
    if unbatched:
        labels = labels[None]
    keys = tf.random.stateless_uniform(tf.shape(labels), seed=seed, alg="philox")
    max_pos = int(num_samples * positive_fraction)
    pos_idx, pos_found = _top_candidates(keys, tf.equal(labels, 1), max(max_pos, 1))
    pos_found = pos_found[:, :max_pos]
    pos_idx = pos_idx[:, :max_pos]
    num_pos = tf.reduce_sum(tf.cast(pos_found, tf.int32), axis=1)
    neg_idx, neg_found = _top_candidates(keys, tf.equal(labels, 0), num_samples)
    neg_found = tf.logical_and(neg_found, tf.range(num_samples)[None] < (num_samples - num_pos)[:, None])
    indices, valid = _compact(tf.concat([pos_idx, neg_idx], 1), tf.concat([pos_found, neg_found], 1),
                              num_samples)
    mask = indices_to_mask(indices, valid, tf.shape(labels)[1])
    sample = Sample(indices, valid, mask, num_pos)
    return Sample(*(t[0] for t in sample)) if unbatched else sample

"""Batch-level mixup (Zhang et al., 2018) and label smoothing arithmetic.

Shape glossary: B batch size, H/W/C image dims, K number of classes.
As in NVIDIA's PyTorch recipe, one lambda ~ Beta(alpha, alpha) is drawn per
batch and each example is mixed with a partner from a random permutation.
"""
import tensorflow as tf

from efficientnet_tf2.autoaugment import resolve_seed


def sample_beta(alpha, seed):
    """Draws one Beta(alpha, alpha) sample: float, [2] int seed -> float32 scalar."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    a = tf.random.stateless_gamma([], seeds[0], alpha=alpha)
    b = tf.random.stateless_gamma([], seeds[1], alpha=alpha)
    return a / tf.maximum(a + b, 1e-12)


def mix_with_partner(images, labels, lam, partner=None):
    """Deterministic mixup arithmetic.

    Args:
      images: [B, H, W, C] float32.
      labels: [B, K] float32 (one-hot or soft).
      lam: float32 scalar weight of the original example.
      partner: [B] int32 partner indices; None -> reversed batch order.

    Returns:
      (lam * images + (1 - lam) * images[partner],
       lam * labels + (1 - lam) * labels[partner]), same shapes and dtypes.
    """
    if partner is None:
        partner = tf.range(tf.shape(images)[0] - 1, -1, -1)
    lam = tf.cast(lam, images.dtype)
    mixed_images = lam * images + (1.0 - lam) * tf.gather(images, partner)
    lam = tf.cast(lam, labels.dtype)
    mixed_labels = lam * labels + (1.0 - lam) * tf.gather(labels, partner)
    return mixed_images, mixed_labels


def mixup(images, labels, alpha, seed=None):
    """Mixes a batch with a random permutation of itself.

    Args:
      images: [B, H, W, C] float32.
      labels: [B, K] float32 one-hot (or smoothed) labels.
      alpha: Python float >= 0; 0 returns the inputs unchanged.
      seed: optional [2] int stateless seed.

    Returns:
      (images [B, H, W, C], labels [B, K]) mixed.
    """
    if alpha < 0:
        raise ValueError(f"mixup alpha must be >= 0. Received: alpha={alpha}")
    if alpha == 0:
        return images, labels
    beta_seed, perm_seed = tf.unstack(
        tf.random.experimental.stateless_split(resolve_seed(seed), 2))
    lam = sample_beta(alpha, beta_seed)
    noise = tf.random.stateless_uniform(tf.shape(images)[:1], perm_seed)
    partner = tf.argsort(noise)  # a random permutation, int32
    return mix_with_partner(images, labels, lam, partner)


def smooth_labels(onehot, smoothing):
    """Keras label smoothing: [B, K] float -> onehot * (1 - s) + s / K."""
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must be in [0, 1]. Received: smoothing={smoothing}")
    onehot = tf.convert_to_tensor(onehot)
    num_classes = tf.cast(tf.shape(onehot)[-1], onehot.dtype)
    return onehot * (1.0 - smoothing) + smoothing / num_classes

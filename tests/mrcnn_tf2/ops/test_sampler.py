"""sampler: exact fg/bg counts, shortages, ignore labels, determinism, batching."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf2.ops.sampler import sample_balanced


def make_labels(num_fg, num_bg, num_ignore, seed=0):
    """[N] int32 labels with the given counts, shuffled."""
    labels = np.array([1] * num_fg + [0] * num_bg + [-1] * num_ignore, np.int32)
    return np.random.default_rng(seed).permutation(labels)


def counts(labels, sample):
    """(fg, bg, ignore) among the valid slots; also checks mask == scattered indices."""
    idx = sample.indices.numpy()[sample.valid.numpy()]
    assert len(set(idx.tolist())) == len(idx), "a candidate was drawn twice"
    mask = np.zeros(len(labels), bool)
    mask[idx] = True
    np.testing.assert_array_equal(sample.mask, mask)
    picked = labels[idx]
    return int((picked == 1).sum()), int((picked == 0).sum()), int((picked == -1).sum())


@pytest.mark.parametrize("num_samples,fraction,expected", [(256, 0.5, (128, 128, 0)), (512, 0.25, (128, 384, 0))])
def test_exact_counts_when_enough(num_samples, fraction, expected):
    labels = make_labels(1000, 3000, 500)
    sample = sample_balanced(labels, num_samples, fraction, seed=(1, 2))
    assert counts(labels, sample) == expected
    assert int(sample.num_positives) == expected[0]
    assert sample.valid.numpy().all()


def test_too_few_positives_takes_all_and_fills_with_background():
    labels = make_labels(10, 3000, 100)
    sample = sample_balanced(labels, 256, 0.5, seed=(3, 4))
    assert counts(labels, sample) == (10, 246, 0)


def test_too_few_of_both_leaves_invalid_slots_after_fg_then_bg():
    labels = make_labels(5, 20, 300)
    sample = sample_balanced(labels, 64, 0.25, seed=(5, 6))
    assert counts(labels, sample) == (5, 20, 0)
    valid = sample.valid.numpy()
    np.testing.assert_array_equal(valid, [True] * 25 + [False] * 39)
    picked = labels[sample.indices.numpy()[:25]]
    np.testing.assert_array_equal(picked, [1] * 5 + [0] * 20)
    np.testing.assert_array_equal(sample.indices.numpy()[25:], 0)


def test_fewer_candidates_than_slots_and_no_positives():
    labels = np.array([0, -1, 0], np.int32)
    sample = sample_balanced(labels, 8, 0.5, seed=(0, 1))
    assert counts(labels, sample) == (0, 2, 0)
    assert int(sample.num_positives) == 0


def test_deterministic_for_a_seed_and_varies_with_it():
    labels = make_labels(500, 3000, 0)
    first = sample_balanced(labels, 256, 0.5, seed=(7, 8)).indices.numpy()
    again = sample_balanced(labels, 256, 0.5, seed=(7, 8)).indices.numpy()
    other = sample_balanced(labels, 256, 0.5, seed=(7, 9)).indices.numpy()
    np.testing.assert_array_equal(first, again)
    assert set(first.tolist()) != set(other.tolist())


def test_batched_counts_and_independent_draws():
    labels = np.stack([make_labels(300, 900, 50, seed=0)] * 2)
    sample = sample_balanced(labels, 128, 0.25, seed=tf.constant([11, 12], tf.int64))
    assert sample.indices.shape == (2, 128) and sample.mask.shape == (2, 1250)
    np.testing.assert_array_equal(sample.num_positives, [32, 32])
    for i in range(2):
        assert counts(labels[i], type(sample)(*(t[i] for t in sample))) == (32, 96, 0)
    assert set(sample.indices[0].numpy().tolist()) != set(sample.indices[1].numpy().tolist())


def test_works_inside_tf_function():
    labels = tf.constant(make_labels(50, 200, 10))
    eager = sample_balanced(labels, 32, 0.5, seed=(1, 1))
    graph = tf.function(lambda x: sample_balanced(x, 32, 0.5, seed=(1, 1)))(labels)
    np.testing.assert_array_equal(eager.indices, graph.indices)


def test_same_draw_under_xla():
    labels = tf.constant(make_labels(50, 200, 10))
    eager = sample_balanced(labels, 32, 0.5, seed=(2, 3))
    xla = tf.function(lambda x: sample_balanced(x, 32, 0.5, seed=(2, 3)), jit_compile=True)(labels)
    np.testing.assert_array_equal(eager.indices, xla.indices)
    np.testing.assert_array_equal(eager.mask, xla.mask)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Received"):
        sample_balanced([1, 0], 0, 0.5, seed=(0, 0))

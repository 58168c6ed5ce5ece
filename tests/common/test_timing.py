

def test_release_in_background_drops_the_iterator():
    """The daemon thread takes the reference: the tf.data iterator is gone once the thread ends (the
    trainer drops each epoch's iterator this way: inline, its teardown stalled the main thread 7-59 s;
    where it is destroyed is measured by benchmarks/epoch_boundary_benchmark.py)."""
    import weakref

    import tensorflow as tf

    from common.timing import release_in_background, timed_iter

    iterator = iter(tf.data.Dataset.range(100).map(lambda x: x * 2, num_parallel_calls=2).prefetch(4))
    assert [int(b) for _, b, _ in timed_iter(iterator, 3)] == [0, 2, 4]
    alive = weakref.ref(iterator)
    thread = release_in_background(iterator)
    del iterator
    thread.join(timeout=30)
    assert not thread.is_alive() and alive() is None

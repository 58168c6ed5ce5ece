

def test_release_in_background_drops_the_iterator():
    """The daemon thread takes the reference: the tf.data iterator is gone once the thread ends (the
    trainer drops each epoch's iterator this way: inline, its teardown stalled the main thread 7-59 s;
    where it is destroyed is measured by benchmarks/epoch_boundary_benchmark.py)."""
    import weakref

    import tensorflow as tf

    from common.training.timing import release_in_background, timed_iter

    box = [iter(tf.data.Dataset.range(100).map(lambda x: x * 2, num_parallel_calls=2).prefetch(4))]
    assert [int(b) for _, b, _ in timed_iter(box[0], 3)] == [0, 2, 4]
    alive = weakref.ref(box[0])
    thread = release_in_background(box)
    assert box == []  # the caller's reference is gone at once; the thread holds the last one
    thread.join(timeout=30)
    assert not thread.is_alive() and alive() is None


def test_the_thread_drops_the_last_reference_even_when_it_runs_first():
    """The race that stalled epoch ends: the thread finishing before the caller returns must not leave
    the caller with the last reference (its frame would tear the iterator down on the main thread)."""
    import threading
    import weakref

    from common.training.timing import release_in_background

    class Iterator:
        dropped_on = None

        def __del__(self):
            Iterator.dropped_on = threading.current_thread().name

    box = [Iterator()]
    alive = weakref.ref(box[0])
    release_in_background(box).join(timeout=30)  # the thread has run before this frame lets go of anything
    assert alive() is None and Iterator.dropped_on == "tf.data-iterator-teardown"

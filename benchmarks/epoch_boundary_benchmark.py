"""Epoch-boundary benchmark: seconds between the last training step of an epoch and the first of the next.

Trains the Mask R-CNN demo recipe (``scripts/demo.py``'s ``MRCNN_RECIPE``: 128 px shapes, narrow
ResNet-50-FPN, batch 4) for ``--epochs`` epochs of ``--steps`` steps with validation off, and splits
every boundary into what the main thread did:

* ``teardown``: from the last step's end until ``Trainer.train_epoch`` returns (the old train
  iterator being dropped: inline before, on a daemon thread now, ``common.training.timing.release_in_background``);
* ``checkpoint``: ``Trainer._checkpoint`` (``checkpoint-latest``, written every epoch);
* ``next_first_step``: from the checkpoint's end until the next epoch's first step starts (new
  dataset and iterator, first batch);
* ``dropped_after`` (background only): when the daemon thread finished dropping the old iterator,
  seconds after the boundary began; ``next_epoch_step_s``: the mean step time of the epoch after
  the boundary (a teardown that burns CPU in the background would slow it).

``--teardown inline`` restores the previous behaviour (the iterator dropped on the main thread) in
the same code, so both are measured in one run on the same machine state::

    python benchmarks/epoch_boundary_benchmark.py --teardown inline background --out benchmarks/epoch_boundary_cpu.json

``--steps`` defaults to the demo's full epoch (100 steps = 400 images / 4): the stall shows only when
an epoch runs its pipeline to the end (a 15-step epoch of the same data does not stall).
"""
import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
import weakref

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.command.runtime import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

from common.training import timing, trainer  # noqa: E402
from scripts.convergence_check import train_argv  # noqa: E402
from scripts.demo import MRCNN_RECIPE  # noqa: E402

TEARDOWNS = ("inline", "background")


class BoundaryClock:
    """Wraps one ``Trainer``'s step, ``train_epoch`` and ``_checkpoint`` to time every epoch boundary."""

    def __init__(self):
        self.last_step_end = self.epoch_end = self.checkpoint_end = None
        self.boundaries = []
        self._pending = None
        self.step_times = []

    def install(self, instance):
        steps, train_epoch, checkpoint = instance.steps, instance.train_epoch, instance._checkpoint

        def timed_steps(batch):
            if self._pending is not None:
                self._pending["next_first_step"] = time.perf_counter() - self.checkpoint_end
                self._pending["total"] = time.perf_counter() - self.last_step_end
                self.boundaries.append(self._pending)
                self._pending = None
            start = time.perf_counter()
            out = steps(batch)
            float(out["loss"])
            self.last_step_end = time.perf_counter()
            self.step_times.append(self.last_step_end - start)
            return out

        def timed_epoch(*args, **kwargs):
            self.step_times = []
            result = train_epoch(*args, **kwargs)
            self.epoch_end = time.perf_counter()
            mean_step = sum(self.step_times[1:]) / max(len(self.step_times) - 1, 1)  # first step: new iterator
            if self.boundaries:
                self.boundaries[-1]["next_epoch_step_s"] = mean_step
            self._pending = {"teardown": self.epoch_end - self.last_step_end, "began": self.last_step_end,
                             "previous_epoch_step_s": mean_step}
            return result

        def timed_checkpoint(*args, **kwargs):
            start = time.perf_counter()
            checkpoint(*args, **kwargs)
            self.checkpoint_end = time.perf_counter()
            if self._pending is not None:
                self._pending["checkpoint"] = self.checkpoint_end - start

        instance.steps, instance.train_epoch, instance._checkpoint = timed_steps, timed_epoch, timed_checkpoint


def inline_release(box):
    """The previous behaviour: the last reference dropped on the calling (main) thread."""
    box.clear()


DROPPED = []


def timed_background_release(box):
    """``timing.release_in_background`` that also records when the drop finished (and that it was the last)."""
    holder = box[:]
    box.clear()
    alive = weakref.ref(holder[0])

    def drop():
        holder.clear()
        DROPPED.append((time.perf_counter(), alive() is None))

    thread = timing.threading.Thread(target=drop, daemon=True)
    thread.start()
    return thread


def run(teardown: str, data_dir: str, work_dir: str, epochs: int, steps: int) -> list:
    """Trains ``epochs`` x ``steps`` with the given teardown; returns the boundary timings."""
    import main

    clock = BoundaryClock()
    original_fit = trainer.Trainer.fit
    release = trainer.release_in_background

    def fit(instance, *args, **kwargs):
        clock.install(instance)
        return original_fit(instance, *args, **kwargs)

    trainer.Trainer.fit = fit
    trainer.release_in_background = inline_release if teardown == "inline" else timed_background_release
    DROPPED.clear()
    try:
        recipe = dataclasses.replace(MRCNN_RECIPE, epochs=epochs, steps_per_epoch=steps)
        if main.main(train_argv(recipe, data_dir, work_dir) + ["--no_eval"]) != 0:
            raise RuntimeError("training failed")
    finally:
        trainer.Trainer.fit, trainer.release_in_background = original_fit, release
    for boundary, (dropped, destroyed) in zip(clock.boundaries, DROPPED):
        boundary["dropped_after"] = dropped - boundary["began"]
        boundary["destroyed_on_the_thread"] = destroyed
    for boundary in clock.boundaries:
        del boundary["began"]
    return clock.boundaries


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teardown", nargs="+", choices=TEARDOWNS, default=list(TEARDOWNS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=MRCNN_RECIPE.steps_per_epoch)
    parser.add_argument("--out", help="write the results JSON here")
    return parser.parse_args(argv)


def main_(argv=None) -> int:
    from dataset.make_synthetic_shapes import make_dataset

    args = parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(os.path.join(tmp, "data"), num_train=MRCNN_RECIPE.num_train, num_val=MRCNN_RECIPE.num_val,
                            image_size=MRCNN_RECIPE.image_size, seed=MRCNN_RECIPE.data_seed)["root"]
        for teardown in args.teardown:
            boundaries = run(teardown, data, os.path.join(tmp, f"run-{teardown}"), args.epochs, args.steps)
            for i, b in enumerate(boundaries, start=1):
                row = {"mode": teardown, "boundary": i, **{k: round(v, 3) if isinstance(v, float) else v
                                                           for k, v in b.items()}}
                results.append(row)
                print(json.dumps(row), flush=True)
    print("\n| teardown | boundary | teardown s | checkpoint s | next first step s | total gap s | iterator dropped "
          "after s | step s before / after |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        dropped = f"{r['dropped_after']:.1f}" if "dropped_after" in r else "(inline)"
        print(f"| {r['mode']} | {r['boundary']} | {r['teardown']:.2f} | {r.get('checkpoint', 0):.2f} | "
              f"{r['next_first_step']:.2f} | {r['total']:.2f} | {dropped} | "
              f"{r.get('previous_epoch_step_s', 0):.3f} / {r.get('next_epoch_step_s', 0):.3f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": platform.node(), "cpus": os.cpu_count(), "epochs": args.epochs, "steps": args.steps,
                       "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main_())

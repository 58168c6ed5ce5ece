"""LR schedules: values at chosen steps and config round trips."""
import math

import numpy as np
import pytest

from common.training.schedules import WarmupCosine, WarmupLinear, WarmupPiecewise


def test_warmup_cosine_values():
    s = WarmupCosine(peak_lr=0.1, total_steps=110, warmup_steps=10)
    assert float(s(0)) == pytest.approx(0.01)
    assert float(s(4)) == pytest.approx(0.05)
    assert float(s(9)) == pytest.approx(0.1)
    assert float(s(10)) == pytest.approx(0.1)
    assert float(s(60)) == pytest.approx(0.05, rel=1e-5)
    assert float(s(35)) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.25)), rel=1e-5)
    assert float(s(110)) == pytest.approx(0.0, abs=1e-7)
    assert float(s(500)) == pytest.approx(0.0, abs=1e-7)


def test_warmup_cosine_without_warmup_and_end_lr():
    s = WarmupCosine(peak_lr=1.0, total_steps=100, warmup_steps=0, end_lr=0.1)
    assert float(s(0)) == pytest.approx(1.0)
    assert float(s(50)) == pytest.approx(0.55, rel=1e-5)
    assert float(s(100)) == pytest.approx(0.1, rel=1e-5)


def test_warmup_linear_values():
    s = WarmupLinear(peak_lr=0.1, total_steps=110, warmup_steps=10)
    assert float(s(0)) == pytest.approx(0.01)
    assert float(s(9)) == pytest.approx(0.1)
    assert float(s(10)) == pytest.approx(0.1)
    assert float(s(60)) == pytest.approx(0.05, rel=1e-5)
    assert float(s(110)) == pytest.approx(0.0, abs=1e-7)
    assert float(s(500)) == pytest.approx(0.0, abs=1e-7)
    no_warmup = WarmupLinear(peak_lr=4.0, total_steps=4)
    assert [float(no_warmup(i)) for i in range(5)] == pytest.approx([4.0, 3.0, 2.0, 1.0, 0.0])


def test_warmup_piecewise_values():
    s = WarmupPiecewise(init_lr=0.0, warmup_steps=100, boundaries=[1000, 2000], values=[0.02, 0.002, 0.0002])
    assert float(s(0)) == pytest.approx(0.0)
    assert float(s(50)) == pytest.approx(0.01)
    assert float(s(100)) == pytest.approx(0.02)
    assert float(s(999)) == pytest.approx(0.02)
    assert float(s(1000)) == pytest.approx(0.002)
    assert float(s(2500)) == pytest.approx(0.0002)


@pytest.mark.parametrize("schedule", [WarmupCosine(0.1, 100, 5, 0.001), WarmupLinear(0.1, 100, 5),
                                      WarmupPiecewise(0.001, 10, [50, 80], [0.1, 0.01, 0.001])])
def test_schedule_config_round_trip(schedule):
    clone = type(schedule).from_config(schedule.get_config())
    steps = np.arange(0, 120, 7)
    np.testing.assert_allclose([float(schedule(i)) for i in steps], [float(clone(i)) for i in steps])


def test_invalid_piecewise_is_rejected():
    with pytest.raises(ValueError, match="len\\(boundaries\\)\\+1"):
        WarmupPiecewise(0.0, 10, [5], [0.1])


def _rates(schedule, steps):
    return [float(schedule(step)) for step in steps]


def test_one_vocabulary_gives_each_recipe_its_schedule():
    """NVIDIA's Mask R-CNN recipe (per-image rates, warm-up 0.3 epochs, decays at 8 and 10) and seed 003's cosine,
    written in the shared fields, give the schedules the recipes define."""
    from common.command.registry import get_experiment
    from common.training.schedules import learning_rate_schedule

    batch, per_epoch = 32, 100
    ours = learning_rate_schedule(get_experiment("mask-rcnn").task, batch, per_epoch, epochs=12)
    nvidia = WarmupPiecewise(0.0, 30, [800, 1000], [0.01 * batch, 0.001 * batch, 0.0001 * batch])
    steps = [0, 15, 29, 30, 799, 800, 999, 1000, 1199]
    assert _rates(ours, steps) == pytest.approx(_rates(nvidia, steps))
    ours = learning_rate_schedule(get_experiment("efficientnet-b0").task, batch, per_epoch, epochs=400)
    seed003 = WarmupCosine(0.08 * batch / 4096, 400 * per_epoch, 16 * per_epoch)
    steps = [0, 799, 1600, 20000, 39999]
    assert _rates(ours, steps) == pytest.approx(_rates(seed003, steps))


def test_step_schedule_drops_tenfold_at_each_boundary():
    from common.command.config import TaskConfig
    from common.training.schedules import learning_rate_schedule

    task = TaskConfig(lr=0.1, lr_batch=8, lr_schedule="step", warmup_epochs=1, lr_boundaries=(3, 5))
    schedule = learning_rate_schedule(task, global_batch=16, steps_per_epoch=10, epochs=6)
    assert _rates(schedule, [10, 29, 30, 50]) == pytest.approx([0.2, 0.2, 0.02, 0.002])

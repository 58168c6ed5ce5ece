"""``--early-stop-patience``: the run stops after N evaluations without improvement; model_best keeps the best."""
import json
import os

from tf_keras import optimizers

from common.io.logger import NullLogger
from common.training.early_stop import EarlyStopping
from common.training.trainer import Trainer, TrainerConfig
from regression_task import Regression

SCORES = [1.0, 3.0, 2.0, 2.5, 9.0, 9.5]


class _Scripted(Regression):
    """Validation reports the next value of :data:`SCORES` as ``val.score``."""

    def __init__(self):
        super().__init__()
        self.evaluations = 0

    def reduce_validation(self, sums):
        self.evaluations += 1
        return {"score": SCORES[self.evaluations - 1]}


def test_the_run_stops_after_patience_evaluations_and_keeps_the_best(tmp_path, capsys):
    task = _Scripted()
    model = task.build_model()
    config = TrainerConfig(epochs=6, best_metric="score", early_stop_patience=2, save_every_minutes=0)
    trainer = Trainer(task, model, optimizers.SGD(0.01), config, NullLogger(), workspace=str(tmp_path))
    trainer.fit(8)
    assert task.evaluations == 4  # 1, 3 (best, epoch 2), 2, 2.5: two without improvement
    with open(os.path.join(tmp_path, "model_best", "meta.json")) as handle:
        assert json.load(handle)["epoch"] == 2
    with open(os.path.join(tmp_path, "checkpoint-latest", "meta.json")) as handle:
        assert json.load(handle)["epoch"] == 4
    assert "stopped early after epoch 4: val.score did not improve for 2 evaluation(s) (best 3 at epoch 2" in \
        capsys.readouterr().out


def test_a_resumed_run_continues_the_count():
    stop = EarlyStopping(3, "val.top1")
    stop.restore(50.0, best_epoch=4, last_epoch=6)  # two evaluations since the best
    assert stop.update(7, {"val.top1": 49.0}) is not None
    fresh = EarlyStopping(3, "val.top1")
    fresh.restore(50.0, best_epoch=4, last_epoch=6)
    assert fresh.update(7, {"val.top1": 51.0}) is None and fresh.best_epoch == 7
    assert fresh.update(8, {"train.loss": 1.0}) is None  # no evaluation: not counted

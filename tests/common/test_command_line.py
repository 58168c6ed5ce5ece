"""The one command line: same flags for the same concepts in every family, one parse, config.json."""
import json
import os

import pytest

from common.command import cli, registry
from common.command.config import save_config

FAMILY_MODELS = ("efficientnet-b0", "mask-rcnn")


def _option_strings(mode, model):
    """``{dest: option strings}`` of the parser that ``main.py MODE --model MODEL -h`` prints."""
    family = registry.get_family(model, benchmark=mode == "benchmark")
    parser = cli.build_parser(mode, family, model, registry.get_experiment(model, benchmark=True))
    return {a.dest: tuple(a.option_strings) for a in parser._actions}, parser.format_help()


@pytest.mark.parametrize("mode", cli.MODES)
def test_shared_flags_are_identical_across_families(mode):
    shared = {f.dest: f.names for f in cli.SHARED_FLAGS if mode in f.modes and not f.positional}
    assert shared, mode
    seen = [_option_strings(mode, model) for model in FAMILY_MODELS]
    for dest, names in shared.items():
        for options, help_text in seen:
            assert options[dest] == names, (mode, dest)
            assert all(name in help_text for name in names)


def test_family_flags_do_not_redefine_shared_names():
    shared = {name for f in cli.SHARED_FLAGS for name in f.names}
    for model in FAMILY_MODELS:
        family = registry.get_family(model)
        for mode in cli.MODES:
            clash = {n for f in family.flags(mode) for n in f.names} & shared
            assert not clash, (model, mode, clash)


@pytest.mark.parametrize("text, size", [(["224"], (224, 224)), (["832x1344"], (832, 1344)),
                                        (["128", "256"], (128, 256)), (["64X64"], (64, 64))])
def test_image_size_syntaxes(text, size):
    assert cli.parse_image_size(text) == size


@pytest.mark.parametrize("bad", [["0"], ["12x"], ["a"], ["1", "2", "3"]])
def test_bad_image_size_is_one_line(bad):
    with pytest.raises(SystemExit, match="--image-size takes"):
        cli.parse_image_size(bad)


def test_flags_and_dotted_overrides_land_in_the_experiment():
    inv = cli.parse(["train", "--model", "mask-rcnn", "--image-size", "128", "--batch-size", "2", "--amp",
                     "--config", "rpn.post_nms_topk_test=500", "trainer.epochs=3", "backbone.width_multiplier=0.5"])
    exp = inv.experiment
    assert exp.data.image_size == (128, 128) and exp.trainer.batch_size == 2 and exp.runtime.precision == "AMP"
    assert exp.task.model.rpn.post_nms_topk_test == 500 and exp.task.model.backbone.width_multiplier == 0.5
    assert exp.trainer.epochs == 3  # --config wins: applied last
    assert not exp.runtime.deterministic
    assert cli.parse(["train", "--model", "mask-rcnn", "--deterministic"]).experiment.runtime.deterministic
    effnet = cli.parse(["train", "--model", "efficientnet-b4", "--data-backend", "synthetic"]).experiment
    assert (effnet.trainer.batch_size, effnet.task.lr, effnet.trainer.weight_decay) == (128, 0.16, 5e-6)  # B4 recipe


def test_eval_reads_config_json_and_flags_win(tmp_path):
    trained = cli.parse(["train", "--model", "efficientnet-b0", "--image-size", "64", "--workspace", str(tmp_path),
                         "--data-backend", "synthetic", "--num-classes", "7"]).experiment
    save_config(trained, str(tmp_path))
    inv = cli.parse(["eval", "--workspace", str(tmp_path), "--data-backend", "synthetic"])  # no --model
    assert inv.experiment.model == "efficientnet-b0" and inv.experiment.data.num_classes == 7
    assert inv.experiment.data.image_size == 64
    assert cli.parse(["eval", "--workspace", str(tmp_path), "--image-size", "96"]).experiment.data.image_size == 96
    with pytest.raises(SystemExit, match="pass --model efficientnet-b0"):
        cli.parse(["eval", "--model", "mask-rcnn", "--workspace", str(tmp_path)])
    assert json.load(open(os.path.join(tmp_path, "config.json")))["data"]["num_classes"] == 7


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "resnet-9000"], "unknown --model 'resnet-9000'"),
    (["train", "--model", "efficientnet-b0", "--config", "nope=1"], "Unknown config field 'task.model.nope'"),
    (["train", "--model", "efficientnet-b0", "-b", "0"], "-b/--batch-size"),
    (["train", "--model", "mask-rcnn", "--optimizer", "rmsprop"], "mask-rcnn --optimizer must be sgd or adam"),
    (["train", "--model", "efficientnet-b0", "--image-size", "64x96"], "takes square images"),
    (["fly", "--model", "efficientnet-b0"], None),
])
def test_bad_command_lines_are_one_line_errors(argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse(argv)
    if message:
        assert message in str(exit_info.value)


def test_one_meaning_per_flag_in_every_mode():
    """A flag spelled in several modes goes to the same place (benchmark's -b takes a list of them)."""
    dests = {}
    for f in cli.SHARED_FLAGS:
        for name in f.names:
            for mode in f.modes:
                dests.setdefault((name, mode), set()).add(f.dest)
    assert all(len(d) == 1 for d in dests.values())
    per_name = {}
    for (name, mode), dest in dests.items():
        per_name.setdefault(name, set()).update(dest)
    several = {n: d for n, d in per_name.items() if len(d) > 1}
    # Only aliases kept for NVIDIA's command lines mean different things in different modes: --use-ema (train:
    # keep an EMA; eval/infer/export: --ema-weights), -b/--batch-size and --prof (benchmark: --batch-sizes,
    # --iters), --runtime (benchmark: --runtimes), --precision (benchmark: --precisions, INT8 rows too), positional
    # data (benchmark: NVIDIA's path, unused).
    assert set(several) <= {"--use-ema", "-b", "--batch-size", "--batch_size", "--prof", "--runtime", "--precision",
                            "data"}, several
    for name in several:  # at most one meaning has it as its canonical name; the others list it as an alias
        assert sum(f.names[0] == name for f in cli.SHARED_FLAGS if not f.positional) <= 1, name


@pytest.mark.parametrize("mode", cli.MODEL_MODES)
def test_every_shared_flag_has_its_field_in_every_model(mode):
    """The base experiment declares the shared data/task fields, so no model silently loses a shared flag."""
    for model in registry.list_models():
        experiment = registry.get_experiment(model)
        for item in cli.SHARED_FLAGS:
            if mode in item.modes and not item.dest.startswith(("opt.", "legacy.")):
                assert cli._has_field(experiment, item.dest), (model, item.names[0])


def test_nvidias_learning_rate_spellings_are_the_shared_fields():
    nvidia = cli.parse(["train", "--model", "mask-rcnn", "--use-synthetic-data", "--init_learning_rate", "0.001",
                        "--learning_rate_values", "0.02", "0.002", "0.0002",
                        "--learning_rate_boundaries", "0.5", "6", "9"]).experiment.task
    ours = cli.parse(["train", "--model", "mask-rcnn", "--use-synthetic-data", "--warmup-init-lr", "0.001",
                      "--lr", "0.02", "--lr-values", "0.002", "0.0002", "--warmup-epochs", "0.5",
                      "--lr-boundaries", "6", "9"]).experiment.task
    assert nvidia == ours and (ours.lr_schedule, ours.lr_batch) == ("piecewise", 1)
    seed003 = cli.parse(["train", "--model", "efficientnet-b0", "--data-backend", "synthetic", "--warmup", "3"])
    assert seed003.experiment.task.warmup_epochs == 3.0
    with pytest.raises(SystemExit, match="one rate per --lr-boundaries"):
        cli.parse(["train", "--model", "efficientnet-b0", "--lr-schedule", "piecewise", "--lr-boundaries", "3", "6"])
    with pytest.raises(SystemExit, match="--lr"):
        cli.parse(["train", "--model", "mask-rcnn", "--lr", "inf"])


def test_config_overrides_take_json_words_and_python_literals():
    from common.command.config import parse_overrides

    assert parse_overrides(["a=false", "b=True", "c=null", "d=[1, 2]", "e=word"]) == {
        "a": False, "b": True, "c": None, "d": [1, 2], "e": "word"}

"""Every command line printed in the two seed READMEs and in our README parses.

Seed READMEs: ``../shared/reference/003_*.txt`` (NVIDIA EfficientNet for PyTorch) and
``004_*.txt`` (NVIDIA Mask R-CNN for TF2), listed below with the file they come from;
placeholders are filled in (``<version>`` -> b0, ``{1,8}`` -> each value, ``[--amp]`` ->
with and without). Their scripts map to ours: ``main.py``/``quant_main.py`` -> ``main.py``,
``multiproc.py`` -> ``scripts/launch.py``, ``launch.py --mode benchmark_*`` ->
``main.py benchmark``, ``classify.py``, ``checkpoint2model.py``, ``model2onnx.py`` and
``scripts/*.py`` -> ours of the same name. Left out, with the reason: 004's
``scripts/download_weights.py --save_dir=/weights`` downloads weights, which nothing here
may do (the backbone checkpoint is a file the user passes).

"Parses" means the whole command line goes through the real parser of the entry point
(:func:`common.command.cli.parse` builds the experiment config) without an error.
"""
import itertools
import os
import re
import sys

import pytest

from common.command import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

SEED_003 = "shared/reference/003_20cfb165ac634111.txt"
SEED_004 = "shared/reference/004_ae9cf36eb40ca2bd.txt"
SEED_COMMANDS = [
    (SEED_003, "python ./main.py --arch efficientnet-<version> --evaluate --epochs 1 --pretrained  -b <batch size> <path to imagenet>"),
    (SEED_003, "python classify.py --arch efficientnet-<version> --pretrained --precision AMP|FP32 --image <path to JPEG image>"),
    (SEED_003, "python ./main.py --arch efficientnet-<version> --label-smoothing 0.1 <path to imagenet>"),
    (SEED_003, "python ./main.py --arch efficientnet-<version> --label-smoothing 0.1 --amp --static-loss-scale 256 <path to imagenet>"),
    (SEED_003, "python ./multiproc.py --nproc_per_node 8 ./main.py --arch efficientnet-<version> --label-smoothing 0.1 <path to imagenet>"),
    (SEED_003, "python ./multiproc.py --nproc_per_node 8 ./main.py --arch efficientnet-<version> --label-smoothing 0.1 --amp --static-loss-scale 256 <path to imagenet>"),
    (SEED_003, "python main.py -h"),
    (SEED_003, "python ./main.py --arch efficientnet-<version> --evaluate --epochs 1 --resume <path to checkpoint> -b <batch size> <path to imagenet>"),
    (SEED_003, "python checkpoint2model.py --checkpoint-path <path to checkpoint> --weight-path <path where weights will be stored>"),
    (SEED_003, "python classify.py --arch efficientnet-<version> --pretrained-from-file <path to weights from previous step> --precision AMP|FP32 --image <path to JPEG image>"),
    (SEED_003, "python ./main.py --arch efficientnet-<version> --evaluate --epochs 1 --pretrained-from-file <path to pretrained weights> -b <batch size> <path to imagenet>"),
    (SEED_003, "python ./quant_main.py <path to imagenet> --arch efficientnet-quant-<version> --epochs <# of QAT epochs> --pretrained-from-file <path to non-quantized model weights>"),
    (SEED_003, "python ./quant_main.py <path to imagenet> --arch efficientnet-quant-<version> --resume <path to mid-training checkpoint>"),
    (SEED_003, "python ./quant_main.py --arch efficientnet-quant-<version> --evaluate --epochs 1 --resume <path to checkpoint> -b <batch size> <path to imagenet>"),
    (SEED_003, "python ./multiproc.py --nproc_per_node 8 ./quant_main.py --arch efficientnet-quant-<version> <path to imagenet>"),
    (SEED_003, "python checkpoint2model.py --checkpoint-path <path to quant checkpoint> --weight-path <path where quant weights will be stored>"),
    (SEED_003, "python model2onnx.py --arch efficientnet-quant-<version> --pretrained-from-file <path to model quant weights> -b <batch size> --trt True"),
    (SEED_003, "python classify.py --arch efficientnet-quant-<version> --pretrained-from-file <path to quant weights> --image <path to JPEG image>"),
    (SEED_003, "python ./launch.py --model efficientnet-<version> --precision FP32 --mode benchmark_training --platform DGX1V <path to imagenet> --raport-file benchmark.json --epochs 1 --prof 100"),
    (SEED_003, "python ./launch.py --model efficientnet-<version> --precision TF32 --mode benchmark_training --platform DGXA100 <path to imagenet> --raport-file benchmark.json --epochs 1 --prof 100"),
    (SEED_003, "python ./launch.py --model efficientnet-<version> --precision AMP --mode benchmark_training --platform <DGX1V|DGXA100> <path to imagenet> --raport-file benchmark.json --epochs 1 --prof 100"),
    (SEED_003, "python ./multiproc.py --nproc_per_node 8 ./launch.py --model efficientnet-<version> --precision TF32 --mode benchmark_training --platform DGXA100 <path to imagenet> --raport-file benchmark.json --epochs 1 --prof 100"),
    (SEED_003, "python ./launch.py --model efficientnet-<version> --precision FP32 --mode benchmark_inference --platform DGX1V <path to imagenet> --raport-file benchmark.json --epochs 1 --prof 100"),
    (SEED_003, "python ./launch.py --model efficientnet-<version> --precision AMP --mode benchmark_inference --platform <DGX1V|DGXA100> <path to imagenet> --raport-file benchmark.json --epochs 1 --prof 100"),
    (SEED_004, "python scripts/train.py --gpus {1,8} [--amp]"),
    (SEED_004, "python scripts/train.py --help"),
    (SEED_004, "python scripts/benchmark_training.py --gpus {1,8} --batch_size {2,4} [--amp]"),
    (SEED_004, "python scripts/benchmark_inference.py --batch_size {2,4,8} [--amp]"),
    (SEED_004, "python scripts/train.py --gpus 8 --batch_size 4 [--amp]"),
    (SEED_004, "python scripts/benchmark_training.py --gpus {1,8} --batch_size {4,8,16} [--amp]"),
    (SEED_004, "python scripts/benchmark_inference.py --batch_size {8,16,24} [--amp]"),
    (SEED_004, "python main.py --help"),
]

PLACEHOLDERS = {
    "<version>": "b0", "<batch size>": "64", "<path to imagenet>": "/data/imagenet", "<# of QAT epochs>": "10",
    "<DGX1V|DGXA100>": "DGX1V", "AMP|FP32": "AMP", "<path to JPEG image>": "cat.jpg",
}


def expand(line):
    """Fills placeholders; ``{a,b}`` and ``[--flag]`` become every combination."""
    for key, value in PLACEHOLDERS.items():
        line = line.replace(key, value)
    line = re.sub(r"<[^>]+>", "/some/path", line)
    choices = [m.group(1).split(",") for m in re.finditer(r"\{([^}]+)\}", line)]
    optional = re.findall(r"\[(--[^\]]+)\]", line)
    template = re.sub(r"\{[^}]+\}", "{}", re.sub(r"\[--[^\]]+\]", "<opt>", line))
    for values in itertools.product(*choices) if choices else [()]:
        filled = template.format(*values)
        for keep in itertools.product([True, False], repeat=len(optional)):
            out = filled
            for flag, on in zip(optional, keep):
                out = out.replace("<opt>", flag if on else "", 1)
            yield out.split()


def readme_commands():
    """``python ...`` lines of README.md's code blocks (comments cut, ``...`` lines left out)."""
    text = open(os.path.join(ROOT, "README.md")).read()
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("python ") and "..." not in line:
                lines.append(("README.md", line))
    return lines


def to_main_argv(argv):
    """A command line (``python SCRIPT ARGS``) -> the ``main.py`` argv it runs, or None when the
    script itself only parses (checkpoint2model, convert_torchvision_checkpoint)."""
    if argv[1] == "-m":  # python -m MODULE: the module's own parser
        assert argv[2] == "dataset.convert", argv
        from dataset import convert

        convert._parse(argv[3:])
        return None
    script, args = os.path.basename(argv[1]), argv[2:]
    if script in ("main.py", "quant_main.py"):
        return args
    if script in ("multiproc.py",):
        import launch

        forwarded = launch.parse_args(args).command
        return to_main_argv(["python"] + forwarded)
    if script == "launch.py":
        import launch

        if launch.is_nvidia_benchmark_launch(args):
            return args
        return to_main_argv(["python"] + launch.parse_args(args).command)
    if script == "classify.py":
        import classify

        return ["infer"] + classify.translate(args)
    if script in ("train.py", "evaluate.py", "inference.py"):
        return [{"train.py": "train", "evaluate.py": "eval", "inference.py": "infer"}[script]] + args
    if script.startswith("benchmark_"):
        return ["benchmark", "--kind", script[len("benchmark_"):-3]] + args
    if script == "checkpoint2model.py":
        import checkpoint2model

        checkpoint2model.parse_args(args)
        return None
    if script == "convert_torchvision_checkpoint.py":
        import convert_torchvision_checkpoint

        convert_torchvision_checkpoint.parse_args(args)
        return None
    if script == "model2onnx.py":
        import model2onnx

        return model2onnx.main_argv(args)
    raise AssertionError(f"no entry point for {script}")


def parse_or_help(argv, capsys):
    """Parses ``argv``; ``-h`` must print help and exit 0."""
    if argv is None:
        return
    if not argv or "-h" in argv or "--help" in argv:
        if argv[:1] in ([], ["-h"], ["--help"]):
            cli.print_overview()
        else:
            with pytest.raises(SystemExit) as exit_info:
                cli.parse(argv)
            assert exit_info.value.code == 0
        assert "usage" in capsys.readouterr().out
        return
    if argv[0] == "report":  # the report's own parser (no model, no TensorFlow)
        from common.io import report

        assert report.build_parser().parse_args(argv[1:]).workspace
        return
    if argv[0] == "weights":  # the registry's own small parser (no model, no TensorFlow)
        from common.weights import cli as weights_cli

        assert weights_cli.build_parser().parse_args(argv[1:]).action in ("list", "path", "download")
        return
    invocation = cli.parse(argv)
    assert invocation.mode in cli.MODES


CASES = [(source, argv) for source, line in SEED_COMMANDS for argv in expand(line)]


@pytest.mark.parametrize("source, argv", CASES, ids=[" ".join(a[1:])[:90] for _, a in CASES])
def test_seed_readme_command_parses(source, argv, capsys):
    parse_or_help(to_main_argv(argv), capsys)


@pytest.mark.parametrize("source, line", readme_commands(), ids=[line[:90] for _, line in readme_commands()])
def test_our_readme_command_parses(source, line, capsys):
    parse_or_help(to_main_argv(line.split()), capsys)


def test_the_seed_lists_are_complete():
    """Each listed command appears in its seed README (guards typos in the list above)."""
    for source, line in SEED_COMMANDS:
        path = os.path.join(os.path.dirname(ROOT), source)
        if not os.path.exists(path):
            pytest.skip(f"{path} not present (tests read ../shared when it is there)")
        text = " ".join(open(path, encoding="utf-8", errors="replace").read().split())
        assert line.replace("python ", "", 1).split()[0] in text, line


def test_legacy_spellings_mean_the_same_as_ours():
    evaluate = cli.parse(to_main_argv(
        "python ./main.py --arch efficientnet-b0 --evaluate --epochs 1 --resume /ckpt -b 64 /data".split()))
    assert (evaluate.mode, evaluate.options.checkpoint, evaluate.experiment.trainer.batch_size) == \
        ("eval", "/ckpt", 64)
    assert evaluate.experiment.data.data_dir == "/data"
    bench = cli.parse(to_main_argv("python ./launch.py --model efficientnet-b0 --precision AMP --mode "
                                   "benchmark_training --platform DGX1V /data --raport-file b.json --epochs 1 "
                                   "--prof 100".split()))
    assert (bench.mode, bench.options.kind, bench.options.iters, bench.options.precisions,
            bench.experiment.runtime.log_file) == ("benchmark", "training", 100, ("AMP",), "b.json")
    nvidia = cli.parse(["train", "--model", "mask-rcnn", "--train_batch_size", "2", "--model_dir", "r",
                        "--use_synthetic_data", "--l2_weight_decay", "0.5", "--no_eval"])
    ours = cli.parse(["train", "--model", "mask-rcnn", "--batch-size", "2", "--workspace", "r",
                      "--data-backend", "synthetic", "--weight-decay", "0.5", "--no-eval"])
    assert nvidia.experiment == ours.experiment

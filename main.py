"""Command-line entry point: ``python main.py MODE --model NAME [flags]``.

MODE is ``train | eval | infer | export | info | benchmark`` (and ``weights list``, the registry of
published weights, and ``report --workspace RUN``, a run's ``report.html``); NAME any registered model
(``python main.py -h`` lists them). ``python main.py MODE --model NAME -h`` lists the
flags of a mode; the shared ones are the same for every model family (:mod:`common.command.cli`).
NVIDIA's mode-less spellings (``main.py --arch efficientnet-b0 --evaluate ...``) work too.
"""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    """Parses ``argv`` (default ``sys.argv[1:]``) and runs the mode; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from common.command import runtime

    verbose = "-v" in argv or "--verbose" in argv
    runtime.quiet_tensorflow(verbose=verbose)
    from common.command import cli, commands, errors

    if not argv or argv[0] in ("-h", "--help"):
        cli.print_overview()
        return 0
    try:
        if argv[0] == "weights":
            from common.weights import cli as weights_cli

            return weights_cli.main(argv[1:])
        if argv[0] == "report":
            from common.io import report

            return report.main(argv[1:])
        invocation = cli.parse(argv)  # no TensorFlow needed: --help and flag errors are instant
        if not verbose:
            runtime.import_tensorflow_quietly()
        return commands.run(invocation)
    except (SystemExit, Exception) as err:  # user errors: one line, exit 2; bugs keep their traceback
        status = errors.report(err, verbose=verbose)
        if status is None:
            raise
        return status


if __name__ == "__main__":
    sys.exit(main())

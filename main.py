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
    """Parses ``argv`` (default ``sys.argv[1:]``) and runs the mode; returns the exit status (a multi-worker
    process ends here instead: :func:`_end_multiworker_process`)."""
    status = _run(argv)
    _end_multiworker_process(status)
    return status


def _end_multiworker_process(status: int) -> None:
    """Ends a process that ran TensorFlow's collective runtime with ``os._exit`` after flushing, skipping the
    interpreter's teardown: its threads can abort the process while Python exits (seen in CI after a correct
    SIGTERM save: "terminate called after throwing an instance of ''", status -6 instead of 143). The run's own
    files are closed by then (the log and the lock in ``finally``, checkpoints renamed into place)."""
    distribution = sys.modules.get("common.training.distribution")
    if distribution is None or not distribution.collectives_started():
        return
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _run(argv) -> int:
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

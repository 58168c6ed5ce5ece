"""Shared platform of every task, in three parts: ``command`` (the command line, flows, experiment registry and
configs), ``training`` (trainer, checkpoints, optimisation, precision, distribution) and ``io`` (data checks,
logging, weights files, exports)."""

"""Training for every task: the shared ``trainer`` and its ``steps``, ``task`` interface, ``checkpoint``,
``ema``, ``optimizers``, ``schedules``, ``precision``, ``distribution`` (+ ``collectives``, ``horovod``),
``validation``, ``initializers`` and ``timing``."""

"""The command layer: one command line (``cli``), the flows of every mode (``commands``), the experiment
registry (``registry``), typed experiment configs (``config``), a task's hooks (``family``), run set-up
(``runtime``), one-line user errors (``errors``) and benchmark timing (``benchmark``)."""

"""What every ``scripts/*.py`` dispatcher does: put the repository on the path and run ``main.py``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dispatch(prefix, argv=None) -> int:
    """``main.py PREFIX... ARGV...`` (ARGV defaults to this process's arguments)."""
    from main import main

    return main(list(prefix) + list(sys.argv[1:] if argv is None else argv))

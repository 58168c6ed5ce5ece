"""Fixtures of the data-set generator tests."""
import os

import pytest


def _read_tree(root):
    """{relative path: bytes} of every file under ``root``."""
    files = {}
    for parent, _, names in os.walk(root):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


@pytest.fixture
def read_tree():
    """The function that maps a folder to {relative path: bytes} of every file below it."""
    return _read_tree

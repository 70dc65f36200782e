"""Fixtures of the kubelet DRA plugin's integration tests (helpers: `dra_node`)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def short_dir():
    """A real folder with a short path (a unix socket path must fit in 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="dra", dir="/tmp"))
    for sub in ("plugin", "reg"):  # the socket folders, made before pyfakefs starts
        (path / sub).mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)

"""Builds of what is shipped: the wheel and sdist (once per test session)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.kube import REPO_ROOT


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the project's wheel and sdist, built from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    # No build isolation: the dev venv has setuptools and wheel (the test extra), so the build
    # needs no package index.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def wheel(dist: Path) -> Path:
    (path,) = dist.glob("pcidevices-*.whl")
    return path

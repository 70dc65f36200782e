"""Suite-wide pytest configuration: plugins every layer may use."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from pyfakefs.fake_filesystem import FakeFilesystem

from fakesys.descriptors import guard_descriptors

pytest_plugins = ["harness.fixtures", "fakesys.background"]

# Property tests: no deadline (a loaded CI machine must not turn a slow example into a failure;
# tests never assert on time). Mutation runs (scripts/mutation) call each test many times in one
# process, which hypothesis reports as "differing executors", and want the same examples for
# every mutant so that a verdict does not depend on luck.
settings.register_profile("pcidevices", deadline=None, max_examples=300)
settings.register_profile(
    "mutation",
    deadline=None,
    max_examples=40,  # every mutant reruns the property tests that cover it
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.differing_executors, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "pcidevices"))


@pytest.fixture
def fs(fs: FakeFilesystem) -> FakeFilesystem:
    """The ``fs`` of pyfakefs, with a thread-safe descriptor table apart from real numbers."""
    guard_descriptors(fs)
    return fs


@pytest.fixture
def short_dir():
    """A real folder with a short path (a unix socket path must fit in 108 bytes).

    Its socket folders (``plugin``, ``reg``) are made on the real filesystem before any
    pyfakefs fixture starts: request it before ``fs`` or ``fake_fs``.
    """
    path = Path(tempfile.mkdtemp(prefix="dra", dir="/tmp"))
    for sub in ("plugin", "reg"):
        (path / sub).mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)

"""Suite-wide pytest configuration: plugins every layer may use."""

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from fakesys.descriptors import guard_descriptors

pytest_plugins = ["harness.fixtures", "fakesys.background"]


@pytest.fixture
def fs(fs: FakeFilesystem) -> FakeFilesystem:
    """The ``fs`` of pyfakefs, with a thread-safe descriptor table apart from real numbers."""
    guard_descriptors(fs)
    return fs

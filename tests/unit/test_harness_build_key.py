"""The test cluster's binary is found where build.sh puts it: both compute the same cache key.

``tests/harness/build.sh`` (bash) and ``tests/harness/kube.py`` (Python) each hash the Go
sources into the folder name of the cached binary; if they disagree, every test run rebuilds
or runs a stale binary. ``build.sh --path`` prints the path without building anything.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from harness import kube

HARNESS = Path(kube.__file__).resolve().parent


def build_sh_path(variant: str, go_dir: Path, cache: Path) -> Path:
    """What ``build.sh --path`` prints for a copy of the harness whose sources are ``go_dir``."""
    script = go_dir.parent / "build.sh"
    out = subprocess.run(
        ["bash", str(script), "--path", variant],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PCIDEVICES_CACHE": str(cache)},
    ).stdout
    return Path(out.strip())


@pytest.fixture
def harness_copy(tmp_path, monkeypatch):
    """A copy of build.sh and the Go sources, with kube.py pointed at it."""
    copy = tmp_path / "harness"
    shutil.copytree(HARNESS / "go", copy / "go")
    shutil.copy(HARNESS / "build.sh", copy / "build.sh")
    monkeypatch.setattr(kube, "GO_DIR", copy / "go")
    monkeypatch.setenv("PCIDEVICES_CACHE", str(tmp_path / "cache"))
    return copy


class TestBuildKey:
    """build.sh and kube.py agree on where each variant of the binary lives."""

    @pytest.mark.parametrize("variant", ["full", "demo"])
    def test_same_path_as_build_sh(self, harness_copy, tmp_path, variant):
        """For the repository's sources, both name the same file."""
        expected = build_sh_path(variant, harness_copy / "go", tmp_path / "cache")
        assert kube.binary_path(variant) == expected
        assert expected.name == kube.VARIANTS[variant]

    def test_every_go_file_is_in_the_key(self, harness_copy, tmp_path):
        """A change to any .go file, a new one included, moves both paths to a new key."""
        before = kube.binary_path("demo")
        (harness_copy / "go" / "extra.go").write_text("package main\n")
        after = build_sh_path("demo", harness_copy / "go", tmp_path / "cache")
        assert after != before
        assert kube.binary_path("demo") == after

    def test_variants_share_one_folder(self, harness_copy):
        """Both variants of one pin set sit side by side (one lock, one folder to clean)."""
        assert kube.binary_path("full").parent == kube.binary_path("demo").parent

"""The wheel and sdist build, pass `twine check` and declare the right requirements.

The base install is the domain library alone (no Kubernetes client, no gRPC): checked in a fresh
virtualenv installed without a package index.
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import pcidevices
from harness.kube import REPO_ROOT
from pcidevices.cli import COMMANDS
from pcidevices.extras import COMMAND_EXTRAS

pytestmark = pytest.mark.ship

CACHE = Path(os.environ.get("PCIDEVICES_CACHE", Path.home() / ".cache" / "pcidevices"))


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


def entry_points(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        return archive.read(name).decode()


def requirements(meta: email.message.Message) -> dict[str, set[str]]:
    """Requirement names by extra ("" for the base install)."""
    found: dict[str, set[str]] = {}
    for line in meta.get_all("Requires-Dist") or []:
        spec, _, marker = line.partition(";")
        name = spec.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
        extra = marker.split("extra ==")[-1].strip().strip("\"'") if "extra ==" in marker else ""
        found.setdefault(extra, set()).add(name)
    return found


def test_twine_check_passes(dist):
    files = sorted(str(p) for p in dist.iterdir())
    assert len(files) == 2, files
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_version_is_the_package_version(wheel):
    assert metadata(wheel)["Version"] == pcidevices.__version__
    assert wheel.name.startswith(f"pcidevices-{pcidevices.__version__}-")


def test_changelog_names_the_version():
    assert f"## {pcidevices.__version__}" in (REPO_ROOT / "CHANGELOG.md").read_text()


def test_base_install_requires_no_cluster_or_kubelet_client(wheel):
    assert requirements(metadata(wheel))[""] == {"attrs", "cattrs", "injector"}


def test_extras_bring_what_each_process_imports(wheel):
    found = requirements(metadata(wheel))
    assert found["agent"] >= {
        "kubernetes",
        "grpcio",
        "protobuf",
        "pyyaml",
        "prometheus-client",
    }
    assert found["yaml"] == {"pyyaml"}
    assert found["kubectl"] == {"kubernetes", "pyyaml"}


def test_every_extra_named_for_a_command_exists(wheel):
    assert set(COMMAND_EXTRAS) <= set(COMMANDS)
    assert set(COMMAND_EXTRAS.values()) <= set(requirements(metadata(wheel)))


def test_console_scripts(wheel):
    scripts = entry_points(wheel)
    assert "pcidevices = pcidevices.cli:console" in scripts
    assert "kubectl-pcidevices = pcidevices.kubectl:main" in scripts


def test_sdist_holds_the_sources_and_changelog(dist):
    import tarfile  # noqa: PLC0415

    (sdist,) = dist.glob("pcidevices-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "src/pcicore/address.py"} <= names


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    """A directory with the base install's requirements (attrs, cattrs, injector) as wheels.

    Downloaded once into the cache outside the clone (the pip cache serves it when warm); the
    installs below then use no index at all.
    """
    house = CACHE / "wheelhouse"
    if not all(list(house.glob(f"{name}-*.whl")) for name in ("attrs", "cattrs", "injector")):
        house.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:"),
                *("--dest", str(house), "attrs>=24.2", "cattrs>=24.1", "injector>=0.22"),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    return house


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory, wheel, wheelhouse) -> Path:
    """A fresh virtualenv with `pip install pcidevices` (no extra), offline."""
    root = tmp_path_factory.mktemp("base-venv")
    venv.create(root, with_pip=True)
    result = subprocess.run(
        [
            *(str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index"),
            *("--find-links", str(wheelhouse), str(wheel)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=_without_checkout(),
    )
    assert result.returncode == 0, result.stderr
    return root


def _without_checkout() -> dict[str, str]:
    """This environment without PYTHONPATH (pip would count a checkout on it as installed)."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}


def run_in(venv_root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # The venv's own interpreter, with no PYTHONPATH pointing back at this checkout.
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        cwd=venv_root,
        env=_without_checkout(),
        timeout=60,
    )


class TestBaseInstall:
    """`pip install pcidevices` without an extra."""

    def test_pcicore_works_alone(self, base_venv):
        code = (
            "from pcicore.address import PciAddress\n"
            "from pcicore.naming import object_name\n"
            "import pcicore, sys\n"
            "assert 'site-packages' in pcicore.__file__, pcicore.__file__\n"
            "print(object_name('node1', PciAddress.parse('0000:03:00.1')))\n"
        )
        result = run_in(base_venv, str(base_venv / "bin" / "python"), "-c", code)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "node1-000003001"

    @pytest.mark.parametrize(
        "module", ["kubernetes", "grpc", "google.protobuf", "prometheus_client", "yaml"]
    )
    def test_no_optional_dependency_is_installed(self, base_venv, module):
        code = f"import importlib.util; print(importlib.util.find_spec({module!r}.split('.')[0]))"
        result = run_in(base_venv, str(base_venv / "bin" / "python"), "-c", code)
        assert result.stdout.strip() == "None", result.stdout + result.stderr

    @pytest.mark.parametrize("argv", [["scan"], ["scan", "-o", "json"], ["status"]])
    def test_node_commands_need_no_extra(self, base_venv, argv):
        """`pcidevices scan` and the node commands read sysfs with the domain library alone."""
        result = run_in(base_venv, str(base_venv / "bin" / "pcidevices"), *argv)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip()

    @pytest.mark.parametrize(
        ("argv", "extra"),
        [
            (["pcidevices", "agent"], "agent"),
            (["pcidevices", "scan", "-o", "yaml"], "yaml"),
            (["kubectl-pcidevices", "ls"], "kubectl"),
        ],
    )
    def test_command_names_the_extra_to_install(self, base_venv, argv, extra):
        result = run_in(base_venv, str(base_venv / "bin" / argv[0]), *argv[1:])
        assert result.returncode == 1, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f"pip install 'pcidevices[{extra}]'" in lines[0]

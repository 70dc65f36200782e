"""The helm CLI, built from its Go module by helm.sh and cached outside the clone."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from harness.kube import HARNESS_DIR, REPO_ROOT, HarnessError, loopback_env

HELM_SCRIPT = HARNESS_DIR / "helm.sh"
CHART = REPO_ROOT / "deploy" / "helm" / "pcidevices"


def ensure_helm() -> Path:
    """The path of the helm binary, building it first if the pin changed (minutes, once)."""
    result = subprocess.run(
        [str(HELM_SCRIPT)], capture_output=True, text=True, check=False, timeout=3600
    )
    if result.returncode != 0:
        raise HarnessError(f"{HELM_SCRIPT} failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


class Helm:
    """Runs one helm binary with a private home (no repositories, no plugins, no cache)."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.home = home

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run helm; never raises on exit code."""
        env = loopback_env() | {
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        return subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )

    def template(
        self,
        namespace: str,
        values: Mapping[str, object] | None = None,
        extra: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """``helm template`` of the chart with CRDs, ``values`` given as a values file."""
        args = ["template", "pcidevices", str(CHART), "--namespace", namespace, "--include-crds"]
        if values:
            path = self.home / "values.yaml"
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(dict(values)))
            args += ["--values", str(path)]
        return self.run(*args, *extra)

"""The kubectl plugin's commands: a placeholder until `ls`, `claim` and `release` land."""

from __future__ import annotations

import kubernetes

from pcicore.errors import PciDevicesError


def run(arguments: list[str]) -> int:
    """Refuse every command: none is implemented yet."""
    del arguments
    raise PciDevicesError(f"no command is implemented yet (kubernetes {kubernetes.__version__})")

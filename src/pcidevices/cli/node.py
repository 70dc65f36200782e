"""Arguments of the node-admin commands ``bind``, ``release``, ``status`` and ``restore``.

They move devices to ``vfio-pci`` and back on this node without a cluster; the work is in
`pcidevices.wiring.node_admin`, imported only when one of them runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pcicore.protection import NO_IOMMU_UNSUPPORTED
from pcidevices.cli.scan import add_sysfs_option
from pcihost.paths import DEFAULT_PROC_ROOT, DEFAULT_STATE_FILE


def _common(parser: argparse.ArgumentParser) -> None:
    add_sysfs_option(parser)
    parser.add_argument(
        "--proc",
        type=Path,
        default=DEFAULT_PROC_ROOT,
        metavar="ROOT",
        help=f"procfs mount point to use (default: {DEFAULT_PROC_ROOT})",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        default=DEFAULT_STATE_FILE,
        metavar="PATH",
        help=f"where claims and original drivers are recorded (default: {DEFAULT_STATE_FILE})",
    )


class RemovedOption(argparse.Action):
    """An option that is no longer supported: using it is a one-line error that says why."""

    def __init__(self, option_strings: list[str], dest: str, default: str) -> None:
        """An option named ``option_strings`` whose use fails, saying ``default`` (the reason)."""
        super().__init__(option_strings, dest, nargs=0, default=default, help=argparse.SUPPRESS)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,  # noqa: ARG002 - argparse's signature
        values: object,  # noqa: ARG002 - argparse's signature
        option_string: str | None = None,
    ) -> None:
        """Stop parsing with the reason given as ``default``."""
        parser.error(f"{option_string} is no longer supported: {self.default}")


def policy_options(parser: argparse.ArgumentParser) -> None:
    """``--deny`` (and the removed ``--no-iommu``), shared by bind, restore and the agent."""
    parser.add_argument("--no-iommu", action=RemovedOption, default=NO_IOMMU_UNSUPPORTED)
    parser.add_argument(
        "--deny",
        action="append",
        default=[],
        metavar="ADDR|CLASS",
        help="never pass through this address, or class prefix (hex, e.g. 03 or 0106); repeatable",
    )


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``bind``, ``release``, ``status`` and ``restore`` to the command line."""
    bind = commands.add_parser(
        "bind", help="move a device (and its IOMMU group, per policy) to vfio-pci"
    )
    bind.add_argument("address", metavar="ADDR", help="PCI address, dddd:bb:dd.f")
    bind.add_argument(
        "--policy",
        choices=("strict", "group"),
        default="strict",
        help="strict: wait until every other device of the IOMMU group is claimed; "
        "group: take the whole group along (default: strict)",
    )
    bind.add_argument(
        "--group", action="store_const", const="group", dest="policy", help="same as --policy group"
    )
    bind.add_argument("--resource-name", help="resourceName to record for the device plugin")
    bind.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    _common(bind)
    policy_options(bind)
    bind.set_defaults(run=_run)

    release = commands.add_parser(
        "release", help="return a claimed device (and its group) to its original driver"
    )
    release.add_argument("address", metavar="ADDR", help="PCI address, dddd:bb:dd.f")
    _common(release)
    release.set_defaults(run=_run)

    status = commands.add_parser("status", help="show claimed devices and their drivers")
    status.add_argument("address", metavar="ADDR", nargs="?", help="only this device")
    _common(status)
    status.set_defaults(run=_run)

    restore = commands.add_parser(
        "restore",
        help="after a reboot or crash: rebind recorded claims, return devices no claim wants",
    )
    _common(restore)
    policy_options(restore)
    restore.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from pcidevices.wiring import node_admin  # noqa: PLC0415 - the work is imported only when it runs

    return node_admin.run(args, stdout=sys.stdout)

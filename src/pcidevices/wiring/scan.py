"""``pcidevices scan``: this node's PCI bus as the PCIDevice objects the cluster will hold."""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Final, TextIO

from pcicore.catalog import DeviceCatalog
from pcicore.device import NodeName
from pcicore.errors import PciDevicesError
from pcicore.naming import DeviceNamer
from pcidevices import render
from pcihost.pciids_file import load_pci_ids
from pcihost.sysfs import SysfsPciBus

# A Kubernetes node name is a DNS subdomain (RFC 1123).
_NODE_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NODE_NAME_MAX: Final = 253


class InvalidNodeNameError(PciDevicesError, ValueError):
    """A node name that Kubernetes would not accept."""


def node_name(given: str | None, environ: Mapping[str, str]) -> NodeName:
    """The node name: ``given``, else ``$NODE_NAME``, else this host's name in lower case.

    Raises:
        InvalidNodeNameError: the name is not a valid Kubernetes node name.
    """
    name = given or environ.get("NODE_NAME") or socket.gethostname().lower()
    if len(name) > _NODE_NAME_MAX or not _NODE_NAME.fullmatch(name):
        raise InvalidNodeNameError(
            f"invalid node name {name!r}: a node name is lower-case letters, digits, '-' and "
            "'.' (RFC 1123); pass the node's name with --node or NODE_NAME"
        )
    return NodeName(name)


def run(
    *,
    sysfs: Path,
    node: str | None,
    pci_ids: Path | None,
    output: str,
    environ: Mapping[str, str],
    stdout: TextIO,
) -> int:
    """Scan, then print in the chosen format; return the exit code."""
    bus = SysfsPciBus(sysfs, topology=False)  # a PCIDevice does not show the topology
    bus.check()
    catalog = DeviceCatalog(node_name(node, environ), DeviceNamer(load_pci_ids(pci_ids)))
    records = catalog.records(bus.devices())
    if output == "table":
        render.write_table(records, stdout)
    elif output == "json":
        render.write_json_list(records, stdout)
    else:
        render.write_yaml_list(records, stdout)
    return 0

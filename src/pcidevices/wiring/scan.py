"""``pcidevices scan``: this node's PCI bus as the PCIDevice objects the cluster will hold.

Scan reads and names, it claims nothing: it needs the bus reader (without the topology) and the
namer, the two objects `pcidevices.wiring.bus.BusModule` provides the long-running processes.
It builds them itself. Scan is a one-shot command bound by its start-up, and importing
``injector`` (with ``inspect`` and ``logging``) was a quarter of that start-up for two
constructor calls; `tests/integration/test_scan_cli.py` keeps those imports out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from pcicore.catalog import DeviceCatalog
from pcicore.device import NodeName, parse_node_name
from pcicore.naming import DeviceNamer
from pcidevices import render
from pcihost.pciids_file import load_pci_ids
from pcihost.sysfs import SysfsPciBus


def node_name(given: str | None, environ: Mapping[str, str]) -> NodeName:
    """The node name: ``given``, else ``$NODE_NAME``, else this host's name in lower case.

    Raises:
        pcicore.errors.InvalidNodeNameError: the name is not a valid Kubernetes node name.
    """
    return parse_node_name(given or environ.get("NODE_NAME") or os.uname().nodename.lower())


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
    SysfsPciBus(sysfs).check()
    name = node_name(node, environ)
    # A PCIDevice does not show the topology, so the bus need not resolve it.
    bus = SysfsPciBus(sysfs, topology=False)
    catalog = DeviceCatalog(name, DeviceNamer(load_pci_ids(pci_ids)))
    records = catalog.records(bus.devices())
    if output == "table":
        render.write_table(records, stdout)
    elif output == "json":
        render.write_json_list(records, stdout)
    else:
        render.write_yaml_list(records, stdout)
    return 0

"""The kubectl plugin's commands: ``ls``, ``claim`` and ``release``.

Each talks to the API server through `pcioperator.kube.api.KubeApi`; what to show and when a
claim is done are decided in `pcidevices.kubectl.view`. Progress goes to stderr, results to
stdout (a table, or ``-o json|yaml``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from pcicore.address import PciAddress
from pcicore.device import NodeName
from pcicore.errors import PciDevicesError
from pcicore.naming import object_name
from pcidevices.kubectl.view import (
    DeviceRow,
    Outcome,
    claim_progress,
    device_rows,
    group_members,
    table,
)
from pcioperator.kube.api import PCIDEVICECLAIMS, PCIDEVICES, JsonObject, KubeApi
from pcioperator.kube.errors import ConflictError, NotFoundError

PROG = "kubectl pcidevices"
NODE_LABEL = "nodename"
_POLL_SECONDS = 0.5


class Usage(argparse.ArgumentParser):
    """An argument parser whose errors are one line."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line and exit with status 2."""
        self.exit(2, f"{PROG}: error: {message} (see {PROG} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The plugin's command line."""
    parser = Usage(prog=PROG, description="Show and claim PCI devices across the cluster.")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: $KUBECONFIG)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Usage)

    def output(command: argparse.ArgumentParser) -> None:
        command.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")

    ls = commands.add_parser("ls", help="list PCI devices like lspci, one node's or all nodes'")
    ls.add_argument("--node", help="only this node's devices")
    output(ls)
    ls.set_defaults(run=_ls)
    for name, run, what in (
        ("claim", _claim, "claim a device for VMs and wait until it is on vfio-pci"),
        ("release", _release, "delete a device's claim and wait until it is back on the host"),
    ):
        command = commands.add_parser(name, help=what)
        command.add_argument("address", metavar="ADDR", help="PCI address, dddd:bb:dd.f")
        command.add_argument("--node", required=True, help="the device's node")
        command.add_argument(
            "--group", action="store_true", help="also every other device of its IOMMU group"
        )
        command.add_argument(
            "--timeout", type=float, default=120.0, metavar="SECONDS", help="(default: 120)"
        )
        output(command)
        command.set_defaults(run=run)
    return parser


def run(
    arguments: Sequence[str],
    api: KubeApi | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Run one command; ``api`` defaults to one made from the kubeconfig."""
    args = build_parser().parse_args(list(arguments))
    command: Callable[[KubeApi, argparse.Namespace, TextIO, TextIO], int] = args.run
    return command(api or _api_from_kubeconfig(args.kubeconfig, args.context), args, out, err)


def _api_from_kubeconfig(path: Path | None, context: str | None) -> KubeApi:
    from kubernetes import config  # noqa: PLC0415 - the client loads slowly; only when needed

    try:
        client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(path) if path else None, context=context
        )
    except (config.ConfigException, OSError) as error:
        where = path or "$KUBECONFIG or ~/.kube/config"
        raise PciDevicesError(
            f"cannot use the kubeconfig {where}: {error}; pass --kubeconfig FILE"
        ) from error
    return KubeApi(client)


# -- ls ------------------------------------------------------------------------------------


def _ls(api: KubeApi, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    selector = f"{NODE_LABEL}={args.node}" if args.node else None
    devices, _ = api.list_objects(PCIDEVICES, label_selector=selector)
    claims, _ = api.list_objects(PCIDEVICECLAIMS)
    rows = device_rows(devices, claims)
    if not rows and args.output == "table":
        where = f"on node {args.node!r}" if args.node else "in the cluster"
        err.write(f"{PROG}: no PCIDevices {where} (is the pcidevices agent running there?)\n")
        return 0
    _write(out, args.output, rows, lambda: table(rows, with_node=not args.node))
    return 0


# -- claim and release ---------------------------------------------------------------------


def _targets(api: KubeApi, args: argparse.Namespace) -> list[DeviceRow]:
    address = PciAddress.parse(args.address)
    name = object_name(NodeName(args.node), address)
    devices, _ = api.list_objects(PCIDEVICES, label_selector=f"{NODE_LABEL}={args.node}")
    claims, _ = api.list_objects(PCIDEVICECLAIMS)
    rows = device_rows(devices, claims)
    target = next((row for row in rows if row.name == name), None)
    if target is None:
        raise PciDevicesError(
            f"node {args.node!r} has no PCI device {address} (no PCIDevice {name}); "
            f"`{PROG} ls --node {args.node}` lists its devices"
        )
    if not args.group:
        return [target]
    if not target.iommu_group:
        raise PciDevicesError(
            f"{address} on {args.node} has no IOMMU group, so --group has nothing to add; "
            "drop --group"
        )
    return group_members(target, rows)


def _claim(api: KubeApi, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    targets = _targets(api, args)
    for row in targets:
        body: JsonObject = {
            "apiVersion": PCIDEVICECLAIMS.api_version,
            "kind": PCIDEVICECLAIMS.kind,
            "metadata": {"name": row.name},
            # The admission webhook replaces userName with the requesting user.
            "spec": {"address": row.address, "nodeName": row.node, "userName": _user()},
        }
        try:
            api.create(PCIDEVICECLAIMS, body)
            err.write(f"pcideviceclaim/{row.name} created ({row.address} {row.description})\n")
        except ConflictError:
            err.write(f"pcideviceclaim/{row.name} exists already; waiting for it\n")
    claims = _wait(api, [row.name for row in targets], args.timeout, err, releasing=False)
    failed = [
        (name, progress)
        for name, progress in ((c["metadata"]["name"], claim_progress(c)) for c in claims)
        if progress.outcome is not Outcome.READY
    ]
    if failed:
        for name, progress in failed:
            err.write(f"{PROG}: error: pcideviceclaim/{name}: {progress.reason}: ")
            err.write(f"{progress.message}\n")
        release = f"{PROG} release {args.address} --node {args.node}"
        err.write(f"{PROG}: the claim stays as it is; `{release}` deletes it\n")
        return 1
    _write(out, args.output, claims, lambda: _claims_table(claims))
    return 0


def _release(api: KubeApi, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    targets = [row for row in _targets(api, args) if row.claimed_by]
    if not targets:
        raise PciDevicesError(
            f"{args.address} on {args.node} is not claimed (no PCIDeviceClaim to delete)"
        )
    last: list[JsonObject] = []
    for row in targets:
        try:
            last.append(api.get(PCIDEVICECLAIMS, row.name))
            api.delete(PCIDEVICECLAIMS, row.name)
            err.write(f"pcideviceclaim/{row.name} deleted; returning {row.address} to the host\n")
        except NotFoundError:
            err.write(f"pcideviceclaim/{row.name} is gone already\n")
    left = _wait(api, [row.name for row in targets], args.timeout, err, releasing=True)
    if left:
        for claim in left:
            progress = claim_progress(claim)
            err.write(f"{PROG}: error: pcideviceclaim/{claim['metadata']['name']} is still ")
            err.write(f"there: {progress.reason}: {progress.message}\n")
        return 1
    _write(out, args.output, last, lambda: "".join(f"released {r.address}\n" for r in targets))
    return 0


def _wait(
    api: KubeApi, names: list[str], timeout: float, err: TextIO, *, releasing: bool
) -> list[JsonObject]:
    """Poll the claims until each is settled (Ready or stuck; gone when releasing).

    Returns the last state of the claims that are not settled the way the command wants:
    for a claim, every claim (the caller reads their outcome); for a release, those still
    there at the deadline or stuck.
    """
    deadline = time.monotonic() + timeout
    said: dict[str, str] = {}
    while True:
        current: dict[str, JsonObject] = {}
        for name in names:
            try:
                current[name] = api.get(PCIDEVICECLAIMS, name)
            except NotFoundError:
                if not releasing:
                    raise PciDevicesError(
                        f"pcideviceclaim/{name} disappeared while waiting for it"
                    ) from None
        for name, claim in current.items():
            progress = claim_progress(claim)
            line = f"{progress.reason}: {progress.message}"
            if said.get(name) != line:
                err.write(f"pcideviceclaim/{name}: {line}\n")
                said[name] = line
        if releasing:
            stuck = [c for c in current.values() if claim_progress(c).reason == "ReturnFailed"]
            if not current or stuck or time.monotonic() > deadline:
                return list(current.values())
        else:
            settled = all(
                claim_progress(c).outcome is not Outcome.WAITING for c in current.values()
            )
            if settled or time.monotonic() > deadline:
                return [current[name] for name in names]
        time.sleep(_POLL_SECONDS)


def _claims_table(claims: list[JsonObject]) -> str:
    lines = [("NAME", "ADDRESS", "NODE", "READY", "REASON")]
    for claim in claims:
        spec = claim.get("spec") or {}
        progress = claim_progress(claim)
        ready = "True" if progress.outcome is Outcome.READY else "False"
        name = claim["metadata"]["name"]
        lines.append(
            (name, spec.get("address", ""), spec.get("nodeName", ""), ready, progress.reason)
        )
    widths = [max(len(cell) for cell in column) for column in zip(*lines, strict=True)]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )


def _user() -> str:
    import getpass  # noqa: PLC0415

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _write(
    out: TextIO, fmt: str, items: Sequence[DeviceRow | JsonObject], text: Callable[[], str]
) -> None:
    plain: list[Any] = [i.as_dict() if isinstance(i, DeviceRow) else i for i in items]
    if fmt == "json":
        json.dump({"apiVersion": "v1", "kind": "List", "items": plain}, out, indent=2)
        out.write("\n")
    elif fmt == "yaml":
        import yaml  # noqa: PLC0415 - only for this format

        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": plain}, out, sort_keys=False)
    else:
        out.write(text())

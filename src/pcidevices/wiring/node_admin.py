"""The node-admin commands: bind, release, status and restore, without a cluster.

This is the composition root of the claim engine for one node: it takes the engine from the
shared `pcidevices.wiring.host.HostModule` (the same wiring as the agent's) and prints what
happened. Every
address is parsed before anything else runs, so a hostile argument never reaches a path.
"""

from __future__ import annotations

import argparse
from typing import TextIO

import injector

from pcicore.address import PciAddress
from pcicore.claim import Action, BindDriver, LoadModules, Probe, SetOverride, Unbind, Wait
from pcicore.device import PciClass
from pcicore.engine import ClaimEngine, ClaimRequest, Outcome, until_settled
from pcicore.errors import ClaimFailedError, DeviceNotFoundError
from pcicore.policy import GroupPolicy
from pcicore.ports import Clock, LedgerStore, PciBus
from pcicore.protection import DenyList
from pcidevices.wiring.host import EngineConfig, HostConfig, HostModule
from pcihost.sysfs import SysfsPciBus


def node_injector(args: argparse.Namespace) -> injector.Injector:
    """The injector of a node-admin command: the host its ``--sysfs``/``--proc`` etc. name."""
    host = HostConfig(sysfs=args.sysfs, proc=args.proc, state_file=args.state_file)
    engine = EngineConfig(deny=DenyList.parse(getattr(args, "deny", [])))
    return injector.Injector([HostModule(host, engine)])


def build_engine(args: argparse.Namespace) -> tuple[ClaimEngine, PciBus, LedgerStore]:
    """The engine for the host at ``--sysfs``/``--proc``, recording in ``--state-file``.

    Raises:
        pcicore.errors.SysfsError: ``--sysfs`` is not a sysfs tree.
    """
    return _checked_engine(node_injector(args))


def _checked_engine(inj: injector.Injector) -> tuple[ClaimEngine, PciBus, LedgerStore]:
    bus = inj.get(SysfsPciBus)
    bus.check()
    return inj.get(ClaimEngine), bus, inj.get(LedgerStore)  # type: ignore[type-abstract]


def run(args: argparse.Namespace, *, stdout: TextIO) -> int:
    """Run the command named by ``args.command``; return the exit code."""
    address = PciAddress.parse(args.address) if getattr(args, "address", None) else None
    inj = node_injector(args)
    engine, bus, state = _checked_engine(inj)
    # The engine never waits; this one-shot command does, on the host's clock, for busy devices.
    clock = inj.get(Clock)  # type: ignore[type-abstract]
    if args.command == "bind" and address is not None:
        request = ClaimRequest(address, GroupPolicy(args.policy), args.resource_name)
        if args.dry_run:
            return _print_plan(engine, request, stdout)
        return _report(until_settled(lambda: engine.bind(request), clock), stdout, "bind")
    if args.command == "release" and address is not None:
        return _report(until_settled(lambda: engine.release(address), clock), stdout, "release")
    if args.command == "restore":
        return _report(until_settled(engine.reconcile, clock), stdout, "restore")
    return _print_status(bus, state, address, stdout)


def _report(outcomes: list[Outcome], stdout: TextIO, verb: str) -> int:
    for outcome in outcomes:
        state = outcome.state
        stdout.write(
            f"{outcome.address}\t{state.phase.value}\t{state.reason.value}\t"
            f"{outcome.driver or '-'}\t{state.message}\n"
        )
    failed = [o for o in outcomes if not (o.bound or o.returned)]
    if failed:
        first = failed[0].state
        raise ClaimFailedError(f"{verb} {failed[0].address}: {first.reason.value}: {first.message}")
    return 0


def _describe(action: Action) -> str:
    match action:
        case LoadModules(modules=modules):
            return f"load modules {', '.join(modules)}"
        case Unbind(address=address, driver=driver):
            return f"unbind from {driver} (echo {address} > driver/unbind)"
        case SetOverride(driver=driver):
            return f"set driver_override to {driver or '(clear)'}"
        case Probe(address=address):
            return f"probe (echo {address} > /sys/bus/pci/drivers_probe)"
        case BindDriver(address=address, driver=driver):
            return f"bind to {driver} (echo {address} > drivers/{driver}/bind)"
        case Wait():
            return "wait"


def _print_plan(engine: ClaimEngine, request: ClaimRequest, stdout: TextIO) -> int:
    plan = engine.plan(request)
    group = plan.group
    stdout.write(
        f"plan for {request.address} (policy {request.policy.value}, IOMMU group {group.group}):\n"
    )
    for address, actions in plan.actions:
        stdout.write(f"  {address}:\n")
        stdout.writelines(f"    - {_describe(action)}\n" for action in actions or ())
        if not actions:
            stdout.write("    - nothing: already on vfio-pci\n")
    if not group.ready:
        stdout.write(f"  waits: {group.waiting_message()}\n")
    stdout.write("dry run: nothing was changed\n")
    return 0


def _print_status(
    bus: PciBus, state: LedgerStore, address: PciAddress | None, stdout: TextIO
) -> int:
    ledger = state.load()
    if address is not None:
        if bus.device(address) is None:
            raise DeviceNotFoundError(address)
        addresses = [address]
    else:
        on_vfio = {d.address for d in bus.devices() if d.is_bound_to_vfio}
        addresses = sorted({*ledger.claims, *ledger.originals, *on_vfio})
    stdout.write("ADDRESS\tCLASS\tDRIVER\tORIGINAL\tCLAIMED\tIOMMU\tRESOURCE\n")
    for each in addresses:
        device = bus.device(each)
        record = ledger.claims.get(each)
        klass: PciClass | None = device.pci_class if device else None
        original = ledger.originals.get(each, device.driver if device else None)
        claimed = "-" if record is None else record.policy.value
        if record is not None and record.claimed_with is not None:
            claimed += f" (with {record.claimed_with})"
        group = device.iommu_group if device and device.iommu_group is not None else "-"
        stdout.write(
            f"{each}\t{klass.class_id if klass else 'gone'}\t"
            f"{(device.driver if device else None) or '-'}\t{original or '-'}\t{claimed}\t"
            f"{group}\t{(record.resource_name if record else None) or '-'}\n"
        )
    return 0

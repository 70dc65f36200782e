"""The kubelet DRA plugin on a fake kernel: real adapters, pyfakefs sysfs, real sockets.

A module of its own (not the DRA tests' conftest) so tests import it by a unique name.

`DraHost` wires a `DraPreparer` exactly as `pcidevices.wiring.dra_plugin` does — real sysfs
bus, driver control, host facts, state files, CDI files — on the `fakesys.hosts.workstation`
kernel, with the ResourceClaims of `dra_fakes.FakeResourceClaims` or any other source. Unix
sockets are real: the plugin's folder is a short real folder created before pyfakefs starts and
mirrored into the fake filesystem, so the checkpoint lands in the fake one and gRPC binds its
socket in the real one.
"""

from __future__ import annotations

from pathlib import Path

from fakesys.hosts import PROC, SYS, Host
from pcicore.backoff import Backoff
from pcicore.claim import ClaimMachine
from pcicore.dra_preparer import DraPreparer, DraSettings
from pcicore.engine import ClaimEngine
from pcicore.naming import DeviceNamer
from pcicore.pciids import PciIds
from pcicore.policy import GroupPolicy
from pcicore.protection import HostProtection
from pcidevices.wiring.dra_plugin import held_by_pci_device_claims
from pcihost.binding import SysfsDriverControl
from pcihost.dra_files import ClaimFiles, DraCheckpointFile
from pcihost.hostfacts import HostFactsReader
from pcihost.statefile import ClaimStateFile
from pcihost.sysfs import SysfsPciBus
from pcihost.vfio import HostVfioNodes
from pciplugin.dra.host import DraPluginHost, DraPluginSettings

CDI = Path("/var/run/cdi")
IDS = PciIds(
    b"8086  Intel Corporation\n\t1533  I210 Gigabit Network Connection\n"
    b"10de  NVIDIA Corporation\n\t2204  GA102 [GeForce RTX 3090]\n\t1aef  GA102 HD Audio\n"
)


def dra_settings(folder: Path) -> DraPluginSettings:
    """Sockets and files below ``folder``; CDI specs in /var/run/cdi."""
    return DraPluginSettings(plugin_dir=folder / "plugin", registry_dir=folder / "reg", cdi_dir=CDI)


def mirror(fs, folder: Path) -> None:
    """Make ``folder``'s socket folders (real ones, see `short_dir`) exist in ``fs`` too."""
    for sub in ("plugin", "reg"):
        fs.create_dir(str(folder / sub))


def make_preparer(
    host: Host,
    settings: DraPluginSettings,
    claims,
    *,
    node: str = "titan",
    policy: GroupPolicy = GroupPolicy.STRICT,
    control=None,
) -> DraPreparer:
    """A preparer on the fake kernel with the real adapters (as the wiring builds it)."""
    bus = SysfsPciBus(SYS)
    dra_ledger = ClaimStateFile(settings.ledger)
    engine = ClaimEngine(
        bus,
        control or SysfsDriverControl(host.modprobe, sysfs=SYS, proc=PROC),
        HostFactsReader(sysfs=SYS, proc=PROC),
        dra_ledger,
        host.clock,
        protection=HostProtection(),
        machine=ClaimMachine(Backoff(base=0.5, cap=8.0, max_attempts=4)),
    )
    return DraPreparer(
        DraSettings(node, str(settings.metadata_dir), policy),
        claims=claims,
        checkpoint=DraCheckpointFile(settings.checkpoint),
        engine=engine,
        ledger=dra_ledger,
        files=ClaimFiles(settings.cdi_dir, settings.metadata_dir),
        bus=bus,
        vfio=HostVfioNodes(Path("/dev"), SYS),
        namer=DeviceNamer(IDS),
        clock=host.clock,
        held=held_by_pci_device_claims(host.state),
    )


def make_plugin(host: Host, settings: DraPluginSettings, claims, **options) -> DraPluginHost:
    """The whole plugin (not started)."""
    return DraPluginHost(settings, make_preparer(host, settings, claims, **options))

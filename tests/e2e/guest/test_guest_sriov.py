"""SR-IOV on the guest's real kernel: VFs of QEMU's NVMe PF made, seen, claimed and removed.

The VF count goes through the project's own path, as the agent's SR-IOV sync does it: the pure
plan (`pcicore.sriov.plan_num_vfs`) carried out by the sysfs adapter
(`pcihost.sriov.SysfsSriovControl`); the VFs are found by `pcidevices scan` and the bus reader,
and moved to vfio-pci and back by the claim engine (`pcidevices bind/release`). Every check is on
what the kernel shows afterwards: `virtfn*`/`physfn` links, IOMMU groups, driver links,
`/dev/vfio/<N>` and the real `VFIO_GROUP_GET_STATUS`.

QEMU's NVMe VFs are offline until the PF brings them online with NVMe virtualization management
commands, so the nvme driver, probing a new VF, gives up half a second later ("Device not ready;
aborting initialisation, CSTS=0x2") and unbinds it. Whether a test saw the VF before or after
that would be up to the scheduler, so the fixture turns the PF's `sriov_drivers_autoprobe` off:
the VFs come up with no driver, as VFs of a PF whose VF driver is not loaded do. The last test
brings them online (`e2e.guest.nvme`, what `nvme virt-mgmt` sends) and probes them, so that a VF
has a driver of its own (nvme) to leave for vfio-pci and come back to.

The NVMe PF is of class 0x0108, not a network PF: the agent publishes no SRIOVNetworkDevice for
it, but its PCIDevice reports `totalVFs`/`numVFs` and each VF's PCIDevice its `physFn`.
"""

from __future__ import annotations

import errno
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.guest import nvme, rawsysfs, vfio
from e2e.layout import NVME_MAX_VFS, NVME_PF, NVME_VFS
from pcicore.address import PciAddress
from pcicore.device import PciDevice
from pcicore.errors import SriovWriteError
from pcicore.ledger import Ledger
from pcicore.sriov import SriovRefusalReason, is_sriov_network_pf, is_sriov_pf, plan_num_vfs, vfs_of
from pcihost.sriov import SysfsSriovControl
from pcihost.statefile import ClaimStateFile
from pcihost.sysfs import SysfsPciBus

PF = PciAddress.parse(NVME_PF)
VIABLE = vfio.GroupStatus(viable=True, container_set=False)


def pcidevices(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the project's console script in the guest, as a node admin would."""
    return subprocess.run(
        ["pcidevices", *map(str, args)], capture_output=True, text=True, check=False, timeout=120
    )


def bus() -> tuple[PciDevice, tuple[PciDevice, ...]]:
    """The PF and its VFs as the project's bus reader finds them now."""
    devices = SysfsPciBus().devices()
    pf = next(d for d in devices if d.address == PF)
    return pf, vfs_of(PF, devices)


def carry_out(wanted: int, claimed: frozenset[PciAddress] = frozenset()) -> tuple[int, ...]:
    """Plan the PF's count as the SR-IOV sync does and write the plan; return the writes."""
    pf, vfs = bus()
    plan = plan_num_vfs(pf, wanted, vfs=vfs, claimed=claimed)
    assert plan.refusal is None, plan.refusal
    for count in plan.writes:
        SysfsSriovControl().write_num_vfs(PF, count)
    return plan.writes


def pf_attribute(name: str) -> str:
    """One attribute of the PF as the kernel prints it."""
    return (rawsysfs.device_dir(NVME_PF) / name).read_text().strip()


def virtfns() -> dict[str, str]:
    """The PF's `virtfn<i>` links: link name -> the VF's address."""
    return {
        link.name: link.readlink().name
        for link in rawsysfs.device_dir(NVME_PF).iterdir()
        if link.name.startswith("virtfn")
    }


def physfn(address: str) -> str:
    """The PF a VF's `physfn` link names."""
    return (rawsysfs.device_dir(address) / "physfn").readlink().name


def on_the_bus(address: str) -> bool:
    """Whether the kernel has a PCI function at ``address``."""
    return rawsysfs.device_dir(address).exists()


def nvme_controller(address: str) -> str | None:
    """The nvme driver's controller (`nvme<N>`) of a function, None when nvme does not drive it."""
    try:
        names = sorted(entry.name for entry in (rawsysfs.device_dir(address) / "nvme").iterdir())
    except FileNotFoundError:
        return None
    return names[0] if names else None


def controller_state(address: str) -> str | None:
    """The state of the function's nvme controller (`live` once it is up), None without one."""
    name = nvme_controller(address)
    if name is None:
        return None
    try:
        return (rawsysfs.device_dir(address) / "nvme" / name / "state").read_text().strip()
    except FileNotFoundError:  # the controller went meanwhile
        return None


def wait_live(address: str, timeout: float = 60.0) -> None:
    """Wait until nvme's controller of ``address`` is `live` (its reset work is asynchronous)."""
    deadline = time.monotonic() + timeout
    while controller_state(address) != "live":
        assert time.monotonic() < deadline, f"nvme never brought {address} up"
        time.sleep(0.2)


@pytest.fixture(autouse=True)
def pf_without_vfs() -> Iterator[None]:
    """Start and end with no VF and the PF on nvme; VFs come up unbound (see the docstring)."""
    assert rawsysfs.driver(NVME_PF) == "nvme"
    rawsysfs.write_attribute(rawsysfs.device_dir(NVME_PF) / "sriov_numvfs", "0")
    rawsysfs.write_attribute(rawsysfs.device_dir(NVME_PF) / "sriov_drivers_autoprobe", "0")
    yield
    for address in NVME_VFS:  # a VF a failed test left on vfio-pci: off it, no probe
        if on_the_bus(address):
            rawsysfs.unbind(address)
            rawsysfs.write_attribute(rawsysfs.device_dir(address) / "driver_override", "\n")
    rawsysfs.write_attribute(rawsysfs.device_dir(NVME_PF) / "sriov_numvfs", "0")
    rawsysfs.write_attribute(rawsysfs.device_dir(NVME_PF) / "sriov_drivers_autoprobe", "1")


def test_the_nvme_controller_is_an_sriov_pf_but_not_a_network_one():
    """The bus reader finds totalVFs 2 and numVFs 0 on the NVMe PF: an SR-IOV PF of class 0x0108."""
    pf, vfs = bus()

    assert (pf.sriov.total_vfs, pf.sriov.num_vfs, pf.sriov.physfn) == (NVME_MAX_VFS, 0, None)
    assert pf_attribute("sriov_totalvfs") == str(NVME_MAX_VFS)
    assert is_sriov_pf(pf)
    assert not is_sriov_network_pf(pf)
    assert vfs == ()


def test_numvfs_creates_vfs_in_groups_of_their_own_that_scan_reports_and_zero_removes():
    """0 -> 2 writes 2: two VFs, physfn links, a group each; scan reports them; 0 removes them."""
    assert carry_out(NVME_MAX_VFS) == (NVME_MAX_VFS,)

    assert pf_attribute("sriov_numvfs") == str(NVME_MAX_VFS)
    assert virtfns() == {"virtfn0": NVME_VFS[0], "virtfn1": NVME_VFS[1]}
    assert [physfn(address) for address in NVME_VFS] == [NVME_PF, NVME_PF]
    groups = [rawsysfs.iommu_group(address) for address in (NVME_PF, *NVME_VFS)]
    assert len(set(groups)) == len(groups)
    assert [rawsysfs.group_members(group) for group in groups[1:]] == [{vf} for vf in NVME_VFS]
    assert [rawsysfs.driver(address) for address in NVME_VFS] == [None, None]

    scanned = json.loads(pcidevices("scan", "-o", "json").stdout)
    status = {item["status"]["address"]: item["status"] for item in scanned["items"]}
    assert (status[NVME_PF]["totalVFs"], status[NVME_PF]["numVFs"]) == (NVME_MAX_VFS, NVME_MAX_VFS)
    assert "physFn" not in status[NVME_PF]
    for address, group in zip(NVME_VFS, groups[1:], strict=True):
        assert status[address]["physFn"] == NVME_PF
        assert status[address]["iommuGroup"] == str(group)
        assert status[address]["kernelDriverInUse"] == ""
        assert (status[address]["vendorId"], status[address]["deviceId"]) == ("1b36", "0010")
    _, vfs = bus()
    assert [str(vf.address) for vf in vfs] == list(NVME_VFS)

    assert carry_out(0) == (0,)

    assert pf_attribute("sriov_numvfs") == "0"
    assert virtfns() == {}
    assert not any(on_the_bus(address) for address in NVME_VFS)
    assert bus()[1] == ()


def test_a_new_count_goes_through_zero_as_the_kernel_demands():
    """2 -> 1: the kernel answers EBUSY to 1 over 2 and ERANGE to 3; the plan writes 0 then 1."""
    carry_out(NVME_MAX_VFS)
    control = SysfsSriovControl()

    with pytest.raises(SriovWriteError, match="write 0 first") as busy:
        control.write_num_vfs(PF, 1)
    with pytest.raises(SriovWriteError, match="sriov_totalvfs") as too_many:
        control.write_num_vfs(PF, NVME_MAX_VFS + 1)

    assert (busy.value.errno, too_many.value.errno) == (errno.EBUSY, errno.ERANGE)
    assert virtfns() == {"virtfn0": NVME_VFS[0], "virtfn1": NVME_VFS[1]}
    pf, vfs = bus()
    refused = plan_num_vfs(pf, NVME_MAX_VFS + 1, vfs=vfs)
    assert refused.refusal is not None
    assert (refused.refusal.reason, refused.writes) == (SriovRefusalReason.ABOVE_TOTAL, ())

    assert carry_out(1) == (0, 1)

    assert pf_attribute("sriov_numvfs") == "1"
    assert virtfns() == {"virtfn0": NVME_VFS[0]}
    assert not on_the_bus(NVME_VFS[1])
    assert physfn(NVME_VFS[0]) == NVME_PF


def test_a_claimed_vf_goes_to_vfio_blocks_a_new_count_and_returns_to_no_driver(tmp_path):
    """bind: the VF on vfio-pci, viable group; numVFs refused while claimed; release: no driver."""
    state = tmp_path / "claims.json"
    carry_out(NVME_MAX_VFS)
    vf, other = NVME_VFS[1], NVME_VFS[0]
    group = rawsysfs.iommu_group(vf)

    bound = pcidevices("bind", vf, "--state-file", state)

    assert bound.returncode == 0, bound.stderr
    assert rawsysfs.driver(vf) == "vfio-pci"
    assert (vfio.DEV_VFIO / str(group)).is_char_device()
    assert vfio.group_status(group) == VIABLE
    assert (rawsysfs.driver(other), rawsysfs.driver(NVME_PF)) == (None, "nvme")
    ledger = ClaimStateFile(state).load()
    assert {str(address): driver for address, driver in ledger.originals.items()} == {vf: None}

    pf, vfs = bus()
    for wanted in (0, 1):  # both would remove the claimed VF (the count goes through 0)
        plan = plan_num_vfs(pf, wanted, vfs=vfs, claimed=frozenset(ledger.claims))
        assert plan.writes == ()
        assert plan.refusal is not None
        assert plan.refusal.reason is SriovRefusalReason.VF_CLAIMED
        assert f"{vf} is claimed" in plan.refusal.message
    assert virtfns() == {"virtfn0": other, "virtfn1": vf}
    assert rawsysfs.driver(vf) == "vfio-pci"

    released = pcidevices("release", vf, "--state-file", state)

    assert released.returncode == 0, released.stderr
    assert rawsysfs.driver(vf) is None
    assert (rawsysfs.device_dir(vf) / "driver_override").read_text().strip() == "(null)"
    assert not (vfio.DEV_VFIO / str(group)).exists()
    assert ClaimStateFile(state).load() == Ledger()

    assert carry_out(0) == (0,)

    assert not any(on_the_bus(address) for address in NVME_VFS)


def test_an_online_vf_leaves_nvme_for_vfio_and_release_gives_it_back_to_nvme(tmp_path):
    """VFs put online and probed run on nvme; bind: vfio-pci, nvme recorded; release: nvme, live."""
    state = tmp_path / "claims.json"
    carry_out(NVME_MAX_VFS)
    pf_controller = Path("/dev", str(nvme_controller(NVME_PF)))
    secondaries = nvme.secondary_controllers(pf_controller)
    assert [(c.vf_number, c.online) for c in secondaries] == [(1, False), (2, False)]
    for controller in secondaries:  # an admin queue and one I/O queue pair, one interrupt
        nvme.assign(pf_controller, controller.controller_id, nvme.RESOURCE_QUEUES, 2)
        nvme.assign(pf_controller, controller.controller_id, nvme.RESOURCE_INTERRUPTS, 1)
        vf = NVME_VFS[controller.vf_number - 1]
        rawsysfs.write_attribute(rawsysfs.device_dir(vf) / "reset", "1")
        nvme.set_online(pf_controller, controller.controller_id)
    assert all(c.online for c in nvme.secondary_controllers(pf_controller))
    # The kernel probes a VF only with the PF's autoprobe on, or a driver_override.
    rawsysfs.write_attribute(rawsysfs.device_dir(NVME_PF) / "sriov_drivers_autoprobe", "1")
    for address in NVME_VFS:
        rawsysfs.write_attribute(rawsysfs.SYS_PCI / "drivers_probe", address)
        wait_live(address)
    vf = NVME_VFS[1]
    group = rawsysfs.iommu_group(vf)
    assert [rawsysfs.driver(address) for address in NVME_VFS] == ["nvme", "nvme"]

    bound = pcidevices("bind", vf, "--state-file", state)

    assert bound.returncode == 0, bound.stderr
    assert rawsysfs.driver(vf) == "vfio-pci"
    assert nvme_controller(vf) is None
    assert vfio.group_status(group) == VIABLE
    assert controller_state(NVME_VFS[0]) == "live"
    ledger = ClaimStateFile(state).load()
    assert {str(address): driver for address, driver in ledger.originals.items()} == {vf: "nvme"}

    released = pcidevices("release", vf, "--state-file", state)

    assert released.returncode == 0, released.stderr
    assert rawsysfs.driver(vf) == "nvme"
    assert (rawsysfs.device_dir(vf) / "driver_override").read_text().strip() == "(null)"
    assert not (vfio.DEV_VFIO / str(group)).exists()
    wait_live(vf)
    assert ClaimStateFile(state).load() == Ledger()

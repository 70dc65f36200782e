"""The claim engine on the guest's real kernel, through the node-admin CLI and the library.

Every check is on what the kernel shows afterwards: the driver link, `driver_override`, the
network interface, `/dev/vfio/<N>` and the real `VFIO_GROUP_GET_STATUS` verdict. A `pcidevices`
process costs 7-11 s under TCG, so each test runs the CLI once or twice and uses the library
in-process for the rest. State files live under pytest's `tmp_path` (in the guest's `/run`),
except the one `test_restore_finishes_a_bind_killed_between_unbind_and_bind` leaves on the result
share for the second boot (`second_boot.py`).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from e2e.guest import rawsysfs, vfio
from e2e.layout import FREE_NIC, MGMT_NIC, SHARED_PAIR
from e2e.qemu import CARRIED_STATE_FILE
from pcicore.address import PciAddress
from pcicore.device import DriverName
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.policy import GroupPolicy
from pcidevices.wiring import node_admin
from pcihost.statefile import ClaimStateFile

VIABLE = vfio.GroupStatus(viable=True, container_set=False)


def pcidevices(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the project's console script in the guest, as a node admin would."""
    return subprocess.run(
        ["pcidevices", *map(str, args)], capture_output=True, text=True, check=False, timeout=120
    )


def override(address: str) -> str:
    """The device's `driver_override` as the kernel prints it (`(null)` when unset)."""
    return (rawsysfs.device_dir(address) / "driver_override").read_text().strip()


def addresses(keys: Iterable[PciAddress]) -> set[str]:
    """Ledger keys (parsed addresses) as the strings sysfs uses."""
    return {str(key) for key in keys}


def test_bind_moves_the_free_nic_to_vfio_and_release_brings_its_interface_back(tmp_path):
    """bind: e1000e -> vfio-pci with a viable /dev/vfio/<N>; release: e1000e and its interface."""
    state = tmp_path / "claims.json"
    group = rawsysfs.iommu_group(FREE_NIC)
    interfaces = rawsysfs.net_interfaces(FREE_NIC)
    assert interfaces, "the e1000e has no network interface at boot"

    bound = pcidevices("bind", FREE_NIC, "--state-file", state)

    assert bound.returncode == 0, bound.stderr
    assert rawsysfs.driver(FREE_NIC) == "vfio-pci"
    assert (vfio.DEV_VFIO / str(group)).is_char_device()
    assert vfio.group_status(group) == VIABLE
    assert rawsysfs.net_interfaces(FREE_NIC) == []
    ledger = ClaimStateFile(state).load()
    assert addresses(ledger.claims) == {FREE_NIC}
    assert {str(a): d for a, d in ledger.originals.items()} == {FREE_NIC: "e1000e"}

    released = pcidevices("release", FREE_NIC, "--state-file", state)

    assert released.returncode == 0, released.stderr
    assert rawsysfs.driver(FREE_NIC) == "e1000e"
    assert override(FREE_NIC) == "(null)"
    assert rawsysfs.net_interfaces(FREE_NIC) == interfaces
    assert not (vfio.DEV_VFIO / str(group)).exists()
    assert ClaimStateFile(state).load() == Ledger()


def test_strict_policy_refuses_one_member_of_the_shared_group_naming_the_other(tmp_path):
    """One e1000 of the pair alone under strict: exit 1, one line naming its partner, no move."""
    first, second = SHARED_PAIR
    group = rawsysfs.iommu_group(first)

    strict = pcidevices("bind", first, "--policy", "strict", "--state-file", tmp_path / "c.json")

    assert strict.returncode == 1
    assert len(strict.stderr.splitlines()) == 1, strict.stderr
    assert "IommuGroupIncomplete" in strict.stderr
    assert f"{second} (e1000)" in strict.stderr
    assert "Traceback" not in strict.stderr
    assert [rawsysfs.driver(address) for address in SHARED_PAIR] == ["e1000", "e1000"]
    with pytest.raises(FileNotFoundError):  # nothing of the group reached vfio-pci
        vfio.group_status(group)


def test_group_policy_moves_the_shared_pair_together_and_returns_both(tmp_path):
    """--policy group: both e1000 on vfio-pci and the group viable; release returns both."""
    state = tmp_path / "claims.json"
    first, _ = SHARED_PAIR
    group = rawsysfs.iommu_group(first)

    bound = pcidevices("bind", first, "--policy", "group", "--state-file", state)

    assert bound.returncode == 0, bound.stderr
    assert [rawsysfs.driver(address) for address in SHARED_PAIR] == ["vfio-pci", "vfio-pci"]
    assert vfio.group_status(group) == VIABLE
    assert addresses(ClaimStateFile(state).load().claims) == set(SHARED_PAIR)

    released = pcidevices("release", first, "--state-file", state)

    assert released.returncode == 0, released.stderr
    assert [rawsysfs.driver(address) for address in SHARED_PAIR] == ["e1000", "e1000"]
    assert [override(address) for address in SHARED_PAIR] == ["(null)", "(null)"]
    assert all(rawsysfs.net_interfaces(address) for address in SHARED_PAIR)
    assert not (vfio.DEV_VFIO / str(group)).exists()


def test_nic_of_the_default_route_is_refused_and_stays_on_virtio(tmp_path):
    """Binding the management NIC fails with one clear line; it keeps virtio-pci and eth0."""
    state = tmp_path / "claims.json"
    interfaces = rawsysfs.net_interfaces(MGMT_NIC)

    refused = pcidevices("bind", MGMT_NIC, "--policy", "group", "--state-file", state)

    assert refused.returncode == 1
    assert len(refused.stderr.splitlines()) == 1, refused.stderr
    assert f"refusing {MGMT_NIC}" in refused.stderr
    assert "default route" in refused.stderr
    assert rawsysfs.driver(MGMT_NIC) == "virtio-pci"
    assert override(MGMT_NIC) == "(null)"
    assert rawsysfs.net_interfaces(MGMT_NIC) == interfaces
    assert ClaimStateFile(state).load() == Ledger()


def test_restore_finishes_a_bind_killed_between_unbind_and_bind():
    """A bind that died after unbind + driver_override is finished by `pcidevices restore`.

    The state file is what `bind` records before it writes anything (claim + original driver);
    the kernel is left as a SIGKILL right after the override write leaves it: unbound, override
    set, never probed. The file lives on the result share: the second boot restores from it.
    """
    address = PciAddress.parse(FREE_NIC)
    CARRIED_STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    state = ClaimStateFile(CARRIED_STATE_FILE)
    state.save(
        Ledger()
        .claim(ClaimRecord(address, GroupPolicy.STRICT, "intel.com/82574L"))
        .remember(address, DriverName("e1000e"))
    )
    rawsysfs.unbind(FREE_NIC)
    rawsysfs.write_attribute(rawsysfs.device_dir(FREE_NIC) / "driver_override", "vfio-pci")
    assert rawsysfs.driver(FREE_NIC) is None

    restored = pcidevices("restore", "--state-file", CARRIED_STATE_FILE)

    assert restored.returncode == 0, restored.stderr
    assert rawsysfs.driver(FREE_NIC) == "vfio-pci"
    assert vfio.group_status(rawsysfs.iommu_group(FREE_NIC)) == VIABLE
    assert addresses(state.load().claims) == {FREE_NIC}


def test_reconcile_returns_a_device_whose_release_was_killed_after_unbind(tmp_path):
    """Release died after dropping the claim and unbinding: the library's reconcile returns it."""
    address = PciAddress.parse(FREE_NIC)
    state_file = tmp_path / "claims.json"
    interfaces = rawsysfs.net_interfaces(FREE_NIC)
    rawsysfs.bind_to_vfio(FREE_NIC)
    # release drops the claim first and keeps the original until the device is back
    ClaimStateFile(state_file).save(Ledger().remember(address, DriverName("e1000e")))
    rawsysfs.unbind(FREE_NIC)
    args = argparse.Namespace(
        sysfs=Path("/sys"), proc=Path("/proc"), state_file=state_file, deny=[]
    )
    engine, _, state = node_admin.build_engine(args)

    outcomes = engine.reconcile()

    assert [(str(o.address), o.returned) for o in outcomes] == [(FREE_NIC, True)]
    assert rawsysfs.driver(FREE_NIC) == "e1000e"
    assert override(FREE_NIC) == "(null)"
    assert rawsysfs.net_interfaces(FREE_NIC) == interfaces
    assert state.load() == Ledger()
    assert engine.reconcile() == []  # converged: a second run has nothing to do


def test_restore_repairs_a_bind_process_killed_once_the_nic_left_its_driver(tmp_path):
    """SIGKILL a real `pcidevices bind` as soon as the e1000e is off e1000e; restore finishes it.

    Where exactly the kill lands (unbound, override written, or already probed) is up to the
    scheduler; whatever it is, the recorded claim must converge to vfio-pci on the next run.
    """
    state = tmp_path / "claims.json"
    bind = subprocess.Popen(
        ["pcidevices", "bind", FREE_NIC, "--state-file", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while rawsysfs.driver(FREE_NIC) == "e1000e" and bind.poll() is None:
        assert time.monotonic() < deadline, "bind never moved the e1000e"
        time.sleep(0.001)  # a busy loop would take a vCPU from the bind it waits for
    bind.send_signal(signal.SIGKILL)
    killed_with = rawsysfs.driver(FREE_NIC)
    assert bind.wait(timeout=30) == -signal.SIGKILL, "bind finished before it could be killed"
    assert addresses(ClaimStateFile(state).load().claims) == {FREE_NIC}

    restored = pcidevices("restore", "--state-file", state)

    assert restored.returncode == 0, f"killed with the NIC on {killed_with}: {restored.stderr}"
    assert rawsysfs.driver(FREE_NIC) == "vfio-pci"
    assert vfio.group_status(rawsysfs.iommu_group(FREE_NIC)) == VIABLE
    print(f"bind was killed with the e1000e on driver {killed_with!r}")  # noqa: T201 (in the log)

"""After a "reboot": the second guest boot restores the claims the first boot recorded.

Run only by `qemu.run_second_boot` (the host's `guest_second_boot` fixture): the file is not named
`test_*.py`, so the first boot does not collect it. The first boot's
`test_guest_claims.py::test_restore_finishes_a_bind_killed_between_unbind_and_bind` leaves the
e1000e claimed in `CARRIED_STATE_FILE` on its result share; the host copies that folder into this
boot's share. This is a fresh kernel, so every device starts on its boot driver, as after a reboot.
"""

import subprocess

from e2e.guest import rawsysfs, vfio
from e2e.layout import FREE_NIC
from e2e.qemu import CARRIED_STATE_FILE
from pcihost.statefile import ClaimStateFile


def test_restore_at_boot_rebinds_the_claim_recorded_before_the_reboot():
    """`pcidevices restore` with the carried state file puts the e1000e back on vfio-pci."""
    assert CARRIED_STATE_FILE.exists(), "the first boot left no claim state file to restore"
    state = ClaimStateFile(CARRIED_STATE_FILE)
    assert {str(address) for address in state.load().claims} == {FREE_NIC}
    assert rawsysfs.driver(FREE_NIC) == "e1000e"  # a fresh boot knows nothing of the claim

    restored = subprocess.run(
        ["pcidevices", "restore", "--state-file", str(CARRIED_STATE_FILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert restored.returncode == 0, restored.stderr
    assert rawsysfs.driver(FREE_NIC) == "vfio-pci"
    assert vfio.group_status(rawsysfs.iommu_group(FREE_NIC)) == vfio.GroupStatus(
        viable=True, container_set=False
    )
    assert {str(address) for address in state.load().claims} == {FREE_NIC}

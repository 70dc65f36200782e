"""Host protection fails closed: what cannot be read about the host refuses claims.

The real `HostFactsReader` on the pyfakefs workstation of `fakesys.hosts`, with the inputs it
needs to find the management NIC and the root disk taken away or made unreadable.
"""

from __future__ import annotations

import pytest
from pyfakefs.helpers import reset_ids, set_uid

from fakesys.hosts import FREE_NIC, MGMT_NIC, NVME, PROC, STATE, SYS, workstation
from pcicore.address import PciAddress
from pcicore.claim import ClaimPhase, Reason
from pcicore.engine import ClaimRequest
from pcicore.errors import ClaimRefusedError, RefusalReason
from pcicore.protection import HostProtection
from pcidevices.cli import main
from pcidevices.wiring.agent import protected_devices
from pcihost.hostfacts import HostFactsReader
from pcihost.sysfs import SysfsPciBus

ROUTE = f"{PROC}/net/route"
MOUNTS = f"{PROC}/mounts"
ROOTS = ["--sysfs", str(SYS), "--proc", str(PROC), "--state-file", str(STATE)]


@pytest.fixture
def unprivileged():
    """Run the test body as an ordinary user, so that file modes are enforced."""
    set_uid(1000)
    yield
    reset_ids()


def _facts():
    return HostFactsReader(sysfs=SYS, proc=PROC).facts()


class TestHostFactsReader:
    """What the reader reports when an input is missing, unreadable, or absent by design."""

    def test_complete_host_has_no_unreadable_input(self, fs):
        """The whole workstation (no IPv6, boot_vga on two devices only) reads completely."""
        workstation(fs)
        facts = _facts()
        assert facts.unreadable == {}
        assert facts.default_route_nics == {PciAddress.parse(MGMT_NIC): "eno1"}

    def test_missing_route_table_is_unreadable_not_empty(self, fs):
        """Without /proc/net/route the facts say so instead of "no NIC is used"."""
        workstation(fs)
        fs.remove(ROUTE)
        facts = _facts()
        assert facts.unreadable == {ROUTE: "No such file or directory"}
        assert facts.default_route_nics == {}

    def test_forbidden_mounts_is_unreadable(self, fs, unprivileged):
        """A /proc/mounts the agent may not read is named with the error."""
        workstation(fs)
        fs.chmod(MOUNTS, 0o000, force_unix_mode=True)
        assert _facts().unreadable == {MOUNTS: "Permission denied"}


class TestClaimsRefusedWhenFactsAreUnread:
    """With a protection input unread nothing moves, and the reason names the input."""

    def test_management_nic_stays_when_the_route_table_is_missing(self, fs):
        """The default-route NIC is not moved when /proc/net/route cannot be read."""
        host = workstation(fs)
        fs.remove(ROUTE)
        with pytest.raises(ClaimRefusedError) as caught:
            host.engine().bind(ClaimRequest(PciAddress.parse(MGMT_NIC)))
        assert caught.value.reason is RefusalReason.HOST_FACTS_UNREADABLE
        assert f"{ROUTE}: No such file or directory" in str(caught.value)
        assert host.driver(MGMT_NIC) == "e1000e"
        assert host.kernel.writes == []

    def test_root_disk_controller_stays_when_mounts_is_forbidden(self, fs, unprivileged):
        """The NVMe controller of / is not moved when /proc/mounts cannot be read."""
        host = workstation(fs)
        fs.chmod(MOUNTS, 0o000, force_unix_mode=True)
        with pytest.raises(ClaimRefusedError) as caught:
            host.engine().bind(ClaimRequest(PciAddress.parse(NVME)))
        assert caught.value.reason is RefusalReason.HOST_FACTS_UNREADABLE
        assert f"{MOUNTS}: Permission denied" in str(caught.value)
        assert host.driver(NVME) == "nvme"

    def test_reconcile_reports_the_refusal_on_the_claim(self, fs):
        """The agent's reconcile fails the claim with reason HostFactsUnreadable, device kept."""
        host = workstation(fs)
        fs.remove(ROUTE)
        [outcome] = host.engine().reconcile([ClaimRequest(PciAddress.parse(FREE_NIC))])
        assert (outcome.state.phase, outcome.state.reason) == (
            ClaimPhase.FAILED,
            Reason.HOST_FACTS_UNREADABLE,
        )
        assert host.driver(FREE_NIC) == "igb"

    def test_node_admin_bind_is_one_line_naming_the_input(self, fs, capsys):
        """``pcidevices bind`` exits 1 with one line that names the unread file."""
        host = workstation(fs)
        fs.remove(MOUNTS)
        assert main(["bind", FREE_NIC, *ROOTS]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"{MOUNTS}: No such file or directory" in err
        assert host.driver(FREE_NIC) == "igb"

    def test_agent_reports_every_device_protected_naming_the_input(self, fs):
        """The PCIDevices the agent reports carry the refusal, so the webhook refuses too."""
        workstation(fs)
        fs.remove(ROUTE)
        devices = SysfsPciBus(SYS).devices()
        refused = protected_devices(HostProtection(), HostFactsReader(sysfs=SYS, proc=PROC))
        reasons = refused(devices)
        assert set(reasons) == {device.address for device in devices}
        for nic in (MGMT_NIC, FREE_NIC):
            assert ROUTE in reasons[PciAddress.parse(nic)]

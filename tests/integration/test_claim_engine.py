"""The claim engine through the real sysfs, host-facts and state-file adapters on a fake kernel.

Each test is named after a failure it prevents (many hit users of Harvester's Go pcidevices
controller: half an IOMMU group handed over, the management NIC taken, a bind retried forever
with nothing rolled back, claims not rebound after a reboot), and asserts
on the host's resulting state: driver links, ``driver_override``, ``/dev/vfio`` and the claim
state file.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from fakesys.hosts import (
    BOOT_VGA,
    FREE_NIC,
    GPU,
    GPU_AUDIO,
    MGMT_NIC,
    NO_IOMMU_NIC,
    NVME,
    workstation,
)
from fakesys.kernel import FakeDriver
from fakesys.tree import FakeDevice
from pcicore.address import PciAddress
from pcicore.claim import ClaimPhase, Reason, SetOverride, Unbind
from pcicore.device import DriverName
from pcicore.engine import ClaimRequest, until_settled
from pcicore.errors import ClaimRefusedError, DeviceNotFoundError, RefusalReason
from pcicore.ledger import ClaimRecord, Ledger
from pcicore.policy import GroupPolicy
from pcicore.protection import DenyList, HostProtection
from pcihost.binding import SysfsDriverControl


def _a(text: str) -> PciAddress:
    return PciAddress.parse(text)


class TestIommuGroups:
    """A device is handed to VFIO only together with the rest of its IOMMU group."""

    def test_gpu_and_its_audio_function_move_together_under_group_policy(self, fs):
        """Claiming the GPU with policy 'group' takes its HDMI audio along; the bridge stays."""
        host = workstation(fs)
        outcomes = host.engine().bind(ClaimRequest(_a(GPU), GroupPolicy.GROUP))
        assert [o.bound for o in outcomes] == [True, True]
        assert host.driver(GPU) == "vfio-pci"
        assert host.driver(GPU_AUDIO) == "vfio-pci"
        assert host.driver("0000:00:01.0") == "pcieport"
        assert host.kernel.vfio_groups() == {1}
        ledger = host.state.load()
        assert ledger.originals == {
            _a(GPU): DriverName("nouveau"),
            _a(GPU_AUDIO): DriverName("snd_hda_intel"),
        }

    def test_releasing_a_group_claim_returns_every_member(self, fs):
        """Release of the GPU returns the audio function too, to its own original driver."""
        host = workstation(fs)
        engine = host.engine()
        engine.bind(ClaimRequest(_a(GPU), GroupPolicy.GROUP))
        outcomes = engine.release(_a(GPU))
        assert all(o.returned for o in outcomes)
        assert host.driver(GPU) == "nouveau"
        assert host.driver(GPU_AUDIO) == "snd_hda_intel"
        assert host.kernel.override_of(GPU) is None
        assert host.kernel.vfio_groups() == set()
        assert host.state.load() == Ledger()

    def test_claiming_one_function_alone_waits_naming_the_missing_member(self, fs):
        """Strict policy never hands over half a group: it waits and names 0000:01:00.1."""
        host = workstation(fs)
        (outcome,) = host.engine().bind(ClaimRequest(_a(GPU), GroupPolicy.STRICT))
        assert outcome.state.phase is ClaimPhase.WAITING
        assert outcome.state.reason is Reason.GROUP_INCOMPLETE
        assert GPU_AUDIO in outcome.state.message
        assert host.driver(GPU) == "nouveau"
        assert host.kernel.writes == []

    def test_strict_claims_on_every_member_bind_the_group(self, fs):
        """Once the audio function is claimed too, both move and /dev/vfio/1 appears."""
        host = workstation(fs)
        engine = host.engine()
        engine.bind(ClaimRequest(_a(GPU)))
        engine.bind(ClaimRequest(_a(GPU_AUDIO)))
        assert (host.driver(GPU), host.driver(GPU_AUDIO)) == ("vfio-pci", "vfio-pci")
        assert host.kernel.vfio_groups() == {1}

    def test_device_without_iommu_group_is_refused_by_default(self, fs):
        """A node without an IOMMU gets a reason that names the fix, not a stuck claim."""
        host = workstation(fs, extra=(FakeDevice(NO_IOMMU_NIC, driver="igb"),))
        with pytest.raises(ClaimRefusedError) as caught:
            host.engine().bind(ClaimRequest(_a(NO_IOMMU_NIC)))
        assert caught.value.reason is RefusalReason.NO_IOMMU
        assert "intel_iommu=on" in str(caught.value)
        assert host.driver(NO_IOMMU_NIC) == "igb"


class TestHostProtection:
    """Devices the host depends on are refused before anything is written."""

    @pytest.mark.parametrize(
        ("address", "evidence"),
        [
            pytest.param(MGMT_NIC, "default route (eno1)", id="management-nic"),
            pytest.param(NVME, "/dev/nvme0n1p2 on /", id="root-disk-controller"),
            pytest.param(BOOT_VGA, "boot_vga=1", id="boot-console-gpu"),
        ],
    )
    def test_device_the_host_depends_on_is_refused(self, fs, address, evidence):
        """The refusal names the evidence, and the device keeps its driver."""
        host = workstation(fs)
        before = host.driver(address)
        with pytest.raises(ClaimRefusedError) as caught:
            host.engine().bind(ClaimRequest(_a(address), GroupPolicy.GROUP))
        assert caught.value.reason is RefusalReason.HOST_DEPENDS_ON_DEVICE
        assert evidence in str(caught.value)
        assert host.driver(address) == before
        assert host.kernel.writes == []
        assert host.state.load() == Ledger()

    def test_nic_enslaved_to_a_bridge_with_the_default_route_is_refused(self, fs):
        """The management NIC under a bond/bridge (mgmt-br) is protected through ``master``."""
        host = workstation(fs)
        fs.remove_object("/proc/net/route")
        fs.create_file(
            "/proc/net/route",
            contents="Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
            "mgmt-br\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n",
        )
        fs.create_dir("/sys/class/net/mgmt-br")
        fs.create_symlink("/sys/class/net/enp3s0/master", "../mgmt-br")
        with pytest.raises(ClaimRefusedError, match="enp3s0 under mgmt-br"):
            host.engine().bind(ClaimRequest(_a(FREE_NIC)))
        assert host.driver(FREE_NIC) == "igb"

    def test_deny_list_by_class_refuses(self, fs):
        """An operator's class deny list (02: network controllers) refuses the free NIC."""
        host = workstation(fs)
        engine = host.engine(protection=HostProtection(DenyList(classes=frozenset({"02"}))))
        with pytest.raises(ClaimRefusedError) as caught:
            engine.bind(ClaimRequest(_a(FREE_NIC)))
        assert caught.value.reason is RefusalReason.DENY_LISTED
        assert host.driver(FREE_NIC) == "igb"


class TestFailedBinds:
    """A bind that cannot finish is retried a bounded number of times, then rolled back."""

    def test_bind_ebusy_retries_with_backoff_then_rolls_back_with_reason(self, fs):
        """EBUSY forever: 4 bind attempts with growing waits, then back on igb, claim dropped."""
        host = workstation(fs)
        host.kernel.fail(FREE_NIC, "bind", errno.EBUSY, driver="vfio-pci")
        engine = host.engine(max_attempts=4)
        (outcome,) = until_settled(lambda: engine.bind(ClaimRequest(_a(FREE_NIC))), host.clock)
        assert outcome.state.reason is Reason.ROLLED_BACK
        assert outcome.state.phase is ClaimPhase.RETURNED
        assert "Device or resource busy" in outcome.state.message
        assert host.driver(FREE_NIC) == "igb"
        assert host.kernel.override_of(FREE_NIC) is None
        assert host.state.load() == Ledger()
        binds = [w for w in host.kernel.writes if w[0] == "bus/pci/drivers/vfio-pci/bind"]
        assert len(binds) == 4
        assert host.clock.slept == [0.5, 1.0, 2.0]

    def test_transient_ebusy_is_retried_until_bound(self, fs):
        """Busy twice, then the bind goes through; no rollback."""
        host = workstation(fs)
        host.kernel.fail(FREE_NIC, "bind", errno.EBUSY, times=2, driver="vfio-pci")
        engine = host.engine()
        (outcome,) = until_settled(lambda: engine.bind(ClaimRequest(_a(FREE_NIC))), host.clock)
        assert outcome.bound
        assert host.driver(FREE_NIC) == "vfio-pci"

    def test_failed_group_member_rolls_back_the_whole_group(self, fs):
        """The audio function cannot bind: the GPU, already on vfio-pci, goes back as well."""
        host = workstation(fs)
        host.kernel.fail(GPU_AUDIO, "bind", errno.EINVAL, driver="vfio-pci")
        outcomes = host.engine().bind(ClaimRequest(_a(GPU), GroupPolicy.GROUP))
        assert not any(o.bound for o in outcomes)
        assert host.driver(GPU) == "nouveau"
        assert host.driver(GPU_AUDIO) == "snd_hda_intel"
        assert host.kernel.vfio_groups() == set()
        assert host.state.load() == Ledger()
        assert GPU_AUDIO in outcomes[0].state.message

    def test_unbind_ebusy_exhausted_leaves_the_device_on_its_driver(self, fs):
        """The original driver never lets go: the device is not left without a driver."""
        host = workstation(fs)
        host.kernel.fail(FREE_NIC, "unbind", errno.EBUSY)
        engine = host.engine()
        (outcome,) = until_settled(lambda: engine.bind(ClaimRequest(_a(FREE_NIC))), host.clock)
        assert not outcome.bound
        assert outcome.retry_after is None
        assert host.driver(FREE_NIC) == "igb"

    def test_device_vanishing_before_bind_is_reported_not_retried(self, fs):
        """A hot-unplugged device gives a named error, and nothing is written."""
        host = workstation(fs)
        host.kernel.unplug(FREE_NIC)
        with pytest.raises(DeviceNotFoundError):
            host.engine().bind(ClaimRequest(_a(FREE_NIC)))
        assert host.kernel.writes == []

    def test_device_reading_vendor_ffff_is_treated_as_gone(self, fs):
        """Surprise removal (config reads all ones) on a recorded claim fails with a reason."""
        host = workstation(fs)
        host.state.save(
            Ledger(
                claims={_a(FREE_NIC): ClaimRecord(_a(FREE_NIC))},
                originals={_a(FREE_NIC): DriverName("igb")},
            )
        )
        host.kernel.surprise_removal(FREE_NIC)
        (outcome,) = host.engine().reconcile()
        assert outcome.state.reason is Reason.DEVICE_VANISHED
        assert host.kernel.writes == []

    def test_missing_vfio_modules_are_loaded_before_binding(self, fs):
        """With vfio-pci not loaded, the engine loads it through modprobe, then binds."""
        host = workstation(fs, loaded_modules=())
        (outcome,) = host.engine().bind(ClaimRequest(_a(FREE_NIC)))
        assert outcome.bound
        modules = fs.get_object("/proc/modules").contents
        assert "vfio_pci " in modules
        assert "vfio_iommu_type1 " in modules

    def test_missing_vfio_module_fails_with_the_fix(self, fs):
        """When vfio-pci is not installed the claim fails, naming the module, device untouched."""
        host = workstation(fs, loaded_modules=())
        host.modprobe.missing = {"vfio_pci"}
        (outcome,) = host.engine().bind(ClaimRequest(_a(FREE_NIC)))
        assert outcome.state.phase is ClaimPhase.FAILED
        assert outcome.state.reason is Reason.MODULES_MISSING
        assert host.driver(FREE_NIC) == "igb"
        assert host.state.load().claims == {}


class TestRecovery:
    """After a crash or a reboot, observing again converges; nothing is stranded."""

    def _claimed(self, host):
        host.state.save(
            Ledger(
                claims={_a(FREE_NIC): ClaimRecord(_a(FREE_NIC), resource_name="intel.com/I210")},
                originals={_a(FREE_NIC): DriverName("igb")},
            )
        )

    def test_crash_between_unbind_and_bind_converges_on_restart(self, fs):
        """Claim recorded, device unbound, process killed: the next run binds it to vfio-pci."""
        host = workstation(fs)
        self._claimed(host)
        control = SysfsDriverControl(host.modprobe)
        control.apply(Unbind(_a(FREE_NIC), DriverName("igb")))
        assert host.driver(FREE_NIC) is None
        outcomes = host.engine().reconcile()
        assert [o.bound for o in outcomes] == [True]
        assert host.driver(FREE_NIC) == "vfio-pci"

    @pytest.mark.parametrize(
        "wanted",
        [
            pytest.param(None, id="restore-from-the-ledger"),
            pytest.param([ClaimRequest(_a(FREE_NIC), resource_name="intel.com/I210")], id="agent"),
        ],
    )
    def test_restart_mid_bind_finishes_the_bind_without_handing_the_device_back(self, fs, wanted):
        """Killed after unbind and override: the restart writes only the probe.

        Returning the device to igb and binding it again ends in the same place, but puts it
        back on the host in between; only the kernel writes tell the two apart.
        """
        host = workstation(fs)
        self._claimed(host)
        control = SysfsDriverControl(host.modprobe)
        control.apply(Unbind(_a(FREE_NIC), DriverName("igb")))
        control.apply(SetOverride(_a(FREE_NIC), DriverName("vfio-pci")))
        before = len(host.kernel.writes)
        (outcome,) = host.engine().reconcile(wanted)
        assert outcome.bound
        assert host.driver(FREE_NIC) == "vfio-pci"
        assert host.kernel.writes[before:] == [("bus/pci/drivers_probe", FREE_NIC)]
        assert host.state.load().originals == {_a(FREE_NIC): DriverName("igb")}

    def test_crash_after_override_during_release_converges_on_restart(self, fs):
        """Claim gone, device unbound with the override still set: restart returns it to igb."""
        host = workstation(fs)
        host.state.save(Ledger(originals={_a(FREE_NIC): DriverName("igb")}))
        control = SysfsDriverControl(host.modprobe)
        control.apply(Unbind(_a(FREE_NIC), DriverName("igb")))
        control.apply(SetOverride(_a(FREE_NIC), DriverName("vfio-pci")))
        host.engine().reconcile()
        assert host.driver(FREE_NIC) == "igb"
        assert host.kernel.override_of(FREE_NIC) is None
        assert host.state.load() == Ledger()

    def test_fresh_boot_with_recorded_claims_rebinds_them(self, fs):
        """After a reboot the device is back on igb; restoring the recorded claim rebinds it."""
        host = workstation(fs)
        self._claimed(host)
        host.engine().reconcile()
        assert host.driver(FREE_NIC) == "vfio-pci"
        assert (
            host.state.load().claims[PciAddress.parse(FREE_NIC)].resource_name == "intel.com/I210"
        )

    def test_device_left_on_vfio_with_recorded_original_and_no_claim_is_returned(self, fs):
        """An orphan on vfio-pci (claim gone, original recorded) goes back to its driver."""
        host = workstation(
            fs,
            extra=(FakeDevice("0000:05:00.0", 0x8086, 0x10FB, driver="vfio-pci", iommu_group=6),),
            drivers=(FakeDriver("ixgbe", frozenset({(0x8086, 0x10FB)})),),
        )
        host.state.save(Ledger(originals={_a("0000:05:00.0"): DriverName("ixgbe")}))
        (outcome,) = host.engine().reconcile()
        assert outcome.returned
        assert host.driver("0000:05:00.0") == "ixgbe"
        assert host.state.load() == Ledger()

    def test_second_reconcile_with_nothing_changed_writes_nothing(self, fs):
        """Level-triggered and idempotent: the second run performs zero writes."""
        host = workstation(fs)
        engine = host.engine()
        wanted = [ClaimRequest(_a(GPU), GroupPolicy.GROUP), ClaimRequest(_a(FREE_NIC))]
        engine.reconcile(wanted)
        writes = list(host.kernel.writes)
        # The state file is replaced (new inode) on every save: same text proves nothing.
        before = host.state.path.stat()
        engine.reconcile(wanted)
        assert host.kernel.writes == writes
        after = host.state.path.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    def test_reconcile_returns_devices_no_longer_wanted(self, fs):
        """The agent passes the cluster's claims: a deleted claim's device goes back."""
        host = workstation(fs)
        engine = host.engine()
        engine.reconcile([ClaimRequest(_a(FREE_NIC))])
        engine.reconcile([])
        assert host.driver(FREE_NIC) == "igb"
        assert host.state.load() == Ledger()


class TestKernelPath:
    """The adapter takes the per-device path, never new_id."""

    def test_binding_never_writes_new_id(self, fs):
        """Two identical NICs: claiming one leaves the other on igb (new_id would take both)."""
        host = workstation(
            fs, extra=(FakeDevice("0000:06:00.0", 0x8086, 0x1533, driver="igb", iommu_group=7),)
        )
        host.engine().bind(ClaimRequest(_a(FREE_NIC)))
        assert host.driver(FREE_NIC) == "vfio-pci"
        assert host.driver("0000:06:00.0") == "igb"
        assert not [w for w in host.kernel.writes if w[0].endswith(("new_id", "remove_id"))]

    def test_fake_kernel_new_id_grabs_every_matching_device(self, fs):
        """The fake kernel models why new_id is avoided: every unbound same-id device binds."""
        host = workstation(
            fs, extra=(FakeDevice("0000:06:00.0", 0x8086, 0x1533, driver="igb", iommu_group=7),)
        )
        for address in (FREE_NIC, "0000:06:00.0"):
            Path(f"/sys/bus/pci/devices/{address}/driver/unbind").write_text(f"{address}\n")
        Path("/sys/bus/pci/drivers/vfio-pci/new_id").write_text("8086 1533\n")
        assert host.driver(FREE_NIC) == "vfio-pci"
        assert host.driver("0000:06:00.0") == "vfio-pci"


class TestBusyDevices:
    """A busy device is a state to report and a time to come back, never a blocked caller."""

    def test_busy_device_does_not_block_the_engine_it_reports_when_to_look_again(self, fs):
        """EBUSY twice then success: each call returns at once, DeviceBusy with its attempt."""
        host = workstation(fs)
        # Each attempt probes (the probe's failure is silent) then binds: 2 faults per EBUSY.
        host.kernel.fail(FREE_NIC, "bind", errno.EBUSY, times=4, driver="vfio-pci")
        engine = host.engine()
        wanted = [ClaimRequest(_a(FREE_NIC))]

        (first,) = engine.reconcile(wanted)
        assert (first.state.phase, first.state.reason) == (ClaimPhase.WAITING, Reason.DEVICE_BUSY)
        assert "retry 1 of 3" in first.state.message
        assert first.retry_after == 0.5
        assert host.clock.slept == []
        writes = len(host.kernel.writes)

        (early,) = engine.reconcile(wanted)  # called again before the backoff ends
        assert early.retry_after == 0.5
        assert len(host.kernel.writes) == writes  # nothing was tried meanwhile

        host.clock.time += 0.5
        (second,) = engine.reconcile(wanted)
        assert "retry 2 of 3" in second.state.message
        assert second.retry_after == 1.0

        host.clock.time += 1.0
        (third,) = engine.reconcile(wanted)
        assert third.bound
        assert third.retry_after is None
        assert host.driver(FREE_NIC) == "vfio-pci"
        assert host.clock.slept == []


class TestSafetyPaths:
    """The rules that keep the host and running VMs safe, each guarded by a test that fails."""

    def test_group_claim_never_takes_a_protected_member_of_its_group(self, fs):
        """Claiming a free function whose group holds the management NIC is refused outright.

        Protection checks every member, not only the claimed one: otherwise a group claim on a
        free function would take the default-route NIC (same IOMMU group) with it.
        """
        sibling = "0000:00:1f.3"
        host = workstation(
            fs,
            extra=(
                FakeDevice(
                    sibling, 0x8086, 0xA348, 0x040300, driver="snd_hda_intel", iommu_group=3
                ),
            ),
        )
        with pytest.raises(ClaimRefusedError) as caught:
            host.engine().bind(ClaimRequest(_a(sibling), GroupPolicy.GROUP))
        assert caught.value.reason is RefusalReason.HOST_DEPENDS_ON_DEVICE
        assert "default route (eno1)" in str(caught.value)
        assert host.driver(MGMT_NIC) == "e1000e"
        assert host.driver(sibling) == "snd_hda_intel"
        assert host.kernel.writes == []

    def test_failed_return_keeps_the_record_of_the_original_driver(self, fs):
        """The igb driver refuses the device back (EINVAL): ReturnFailed; the original stays.

        The record is what holds the claim's finalizer and lets a later run return the device;
        dropping it on a failed return would strand the device on vfio-pci, forgotten.
        """
        host = workstation(fs)
        engine = host.engine()
        engine.bind(ClaimRequest(_a(FREE_NIC)))
        host.kernel.fail(FREE_NIC, "bind", errno.EINVAL, driver="igb")
        (outcome,) = engine.release(_a(FREE_NIC))
        assert (outcome.state.phase, outcome.state.reason) == (
            ClaimPhase.FAILED,
            Reason.RETURN_FAILED,
        )
        assert "echo 0000:03:00.0 > /sys/bus/pci/drivers/igb/bind" in outcome.state.message
        assert host.state.load() == Ledger(originals={_a(FREE_NIC): DriverName("igb")})

    def test_deny_entry_added_after_the_bind_keeps_the_device_and_reports_the_refusal(self, fs):
        """A bound device newly denied stays on vfio-pci (a VM may use it), reason DenyListed.

        One outcome for the device, bound, with the refusal as its reason; the claim stays
        recorded. Deleting the claim then returns it, and the deny entry stops a new bind.
        """
        host = workstation(fs)
        host.engine().bind(ClaimRequest(_a(FREE_NIC)))
        denied = host.engine(
            protection=HostProtection(DenyList(addresses=frozenset({_a(FREE_NIC)})))
        )
        wanted = [ClaimRequest(_a(FREE_NIC))]
        saved = host.state.load()
        writes = len(host.kernel.writes)

        (outcome,) = denied.reconcile(wanted)
        assert outcome.bound
        assert outcome.state.reason is Reason.DENY_LISTED
        assert "stays on vfio-pci" in outcome.state.message
        assert host.driver(FREE_NIC) == "vfio-pci"
        assert host.state.load() == saved
        assert len(host.kernel.writes) == writes

        (released,) = denied.reconcile([])
        assert released.returned
        assert host.driver(FREE_NIC) == "igb"
        (refused,) = denied.reconcile(wanted)
        assert (refused.state.phase, refused.state.reason) == (
            ClaimPhase.FAILED,
            Reason.DENY_LISTED,
        )
        assert host.driver(FREE_NIC) == "igb"

    def test_claim_denied_while_its_device_is_back_on_the_host_reports_the_refusal(self, fs):
        """After a reboot (device on igb, claim recorded) a deny entry refuses it: DenyListed.

        One outcome per device: the refusal, not a ReturnedToHost that hides it.
        """
        host = workstation(fs)
        host.state.save(
            Ledger(
                claims={_a(FREE_NIC): ClaimRecord(_a(FREE_NIC))},
                originals={_a(FREE_NIC): DriverName("igb")},
            )
        )
        denied = host.engine(
            protection=HostProtection(DenyList(addresses=frozenset({_a(FREE_NIC)})))
        )
        (outcome,) = denied.reconcile([ClaimRequest(_a(FREE_NIC))])
        assert (outcome.state.phase, outcome.state.reason) == (
            ClaimPhase.FAILED,
            Reason.DENY_LISTED,
        )
        assert host.driver(FREE_NIC) == "igb"
        assert host.state.load() == Ledger()

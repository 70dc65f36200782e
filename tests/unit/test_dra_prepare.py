"""The pure decisions of the kubelet DRA plugin (pcicore.dra_prepare)."""

from __future__ import annotations

import attrs
import pytest

from dra_fakes import NODE, ref, result
from pcicore.address import PciAddress
from pcicore.claim import ClaimPhase, ClaimState, Goal, Reason
from pcicore.device import IommuGroup
from pcicore.dra import DRIVER_NAME
from pcicore.dra_prepare import (
    CDI_KIND,
    METADATA_KIND,
    AllocatedDevice,
    AllocationResult,
    ClaimAllocation,
    DraCheckpoint,
    DraClaimRef,
    InvalidClaimReferenceError,
    PreparedClaim,
    PreparedFunction,
    PreparePhase,
    allocated_devices,
    cdi_spec_name,
    check_free,
    claim_file_names,
    container_env,
    engine_requests,
    parse_pod_claim_name,
    prepare_failure,
    prepared_files,
    restart_plan,
)
from pcicore.engine import Outcome
from pcicore.errors import (
    ClaimNotAllocatedError,
    ClaimReplacedError,
    DeviceHeldError,
    DraPrepareError,
    ForeignAllocationError,
    InvalidDraDeviceNameError,
)
from pcicore.naming import ResourceName
from pcicore.policy import GroupPolicy

NIC = "0000:03:00.0"
NIC2 = "0000:04:00.0"
POOL = ResourceName("intel.com/I210_GIGABIT_NETWORK_CONNECTION")


def a(text: str) -> PciAddress:
    return PciAddress.parse(text)


def allocated(address: str, request: str = "nic") -> AllocatedDevice:
    (device,) = allocated_devices(ref(), ClaimAllocation(ref(), (result(address, request),)), NODE)
    return device


def function(address: str, request: str = "nic", group: int = 5, **kw) -> PreparedFunction:
    return PreparedFunction(allocated(address, request), POOL, IommuGroup(group), **kw)


def invalid_reference(field: str, shown: str) -> str:
    """The refusal of a text that is not what Kubernetes allows in ``field`` (what a user reads)."""
    return (
        f"invalid ResourceClaim {field} {shown!r}: expected what Kubernetes allows there "
        "(a DNS label or subdomain, a uid); the kubelet or the API sent something else"
    )


class TestClaimReference:
    """Namespace, name and uid become parts of file names: they are checked first."""

    @pytest.mark.parametrize(
        ("namespace", "name", "uid", "field", "bad"),
        [
            ("../etc", "c", "u1", "namespace", "../etc"),
            ("vms", "a/b", "u1", "name", "a/b"),
            ("vms", "c", "../../x", "uid", "../../x"),
            ("vms", "c", "a_b", "uid", "a_b"),
            ("VMS", "c", "u1", "namespace", "VMS"),
            ("", "c", "u1", "namespace", ""),
            ("vms", "C", "u1", "name", "C"),
        ],
        ids=[
            "namespace-dots",
            "name-slash",
            "uid-path",
            "uid-underscore",
            "upper",
            "empty",
            "name-upper",
        ],
    )
    def test_hostile_texts_are_refused_naming_the_field_and_value(
        self, namespace, name, uid, field, bad
    ):
        """A value Kubernetes would never send is refused with the field it came in."""
        with pytest.raises(InvalidClaimReferenceError) as raised:
            DraClaimRef.parse(namespace, name, uid)
        assert str(raised.value) == invalid_reference(field, bad)

    @pytest.mark.parametrize("length", [64, 65, 200])
    def test_a_long_value_is_shown_whole_up_to_64_characters_then_shortened(self, length):
        """A log line stays readable: past 64 characters the value is cut to 61 and ``...``."""
        namespace = "n" * length  # a DNS label has at most 63 characters
        with pytest.raises(InvalidClaimReferenceError) as raised:
            DraClaimRef.parse(namespace, "c", "u1")
        shown = namespace if length <= 64 else "n" * 61 + "..."
        assert str(raised.value) == invalid_reference("namespace", shown)

    def test_a_real_claim_reference_parses(self):
        """A namespace, a dotted name and a UUID are accepted as they are."""
        parsed = DraClaimRef.parse("vms", "vm1.gpu", "5c1e0a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f")
        assert str(parsed) == "vms/vm1.gpu"

    def test_pod_claim_name_is_a_dns_label(self):
        """The pod's name for a template claim is checked too; absent is None."""
        assert parse_pod_claim_name(None) is None
        assert parse_pod_claim_name("gpu") == "gpu"
        with pytest.raises(InvalidClaimReferenceError) as raised:
            parse_pod_claim_name("../gpu")
        assert str(raised.value) == invalid_reference("pod claim name", "../gpu")

    @pytest.mark.parametrize(
        ("request_name", "bad"), [("Nic", "Nic"), ("nic/Fast", "Fast"), ("nic/", "")]
    )
    def test_a_request_name_that_is_no_dns_label_is_refused_by_name(self, request_name, bad):
        """A request (or subrequest) name becomes a file name: the refusal names the part."""
        claim = ClaimAllocation(ref(), (result(NIC, request_name),))
        with pytest.raises(InvalidClaimReferenceError) as raised:
            allocated_devices(ref(), claim, NODE)
        assert str(raised.value) == invalid_reference("request name", bad)


class TestAllocatedDevices:
    """What a claim's allocation asks of this node."""

    def test_only_our_drivers_results_in_address_order(self):
        """Results of another driver are left to it; ours come sorted by address."""
        other = AllocationResult("gpu", "gpu.example.com", NODE, "gpu-0")
        claim = ClaimAllocation(ref(), (result(NIC2), other, result(NIC)))
        devices = allocated_devices(ref(), claim, NODE)
        assert [d.address for d in devices] == [a(NIC), a(NIC2)]
        assert devices[0].name == "pci-0000-03-00-0"
        assert devices[0].pool == NODE

    def test_a_claim_gone_is_replaced(self):
        """The kubelet names a claim the API no longer has: the error says delete the pod."""
        with pytest.raises(ClaimReplacedError) as raised:
            allocated_devices(ref(), None, NODE)
        assert str(raised.value) == (
            "ResourceClaim vms/vm-nic with uid uid-1 no longer exists: it was deleted (and "
            "recreated); delete the pod so that it is scheduled again with the current claim"
        )

    def test_a_claim_of_another_uid_is_replaced(self):
        """A claim recreated under the same name is not the one the kubelet prepares."""
        claim = ClaimAllocation(ref(uid="uid-2"), (result(NIC),))
        with pytest.raises(ClaimReplacedError) as raised:
            allocated_devices(ref(), claim, NODE)
        assert str(raised.value).startswith(
            "ResourceClaim vms/vm-nic with uid uid-1 now has uid uid-2: "
        )

    def test_an_unallocated_claim_is_an_error(self):
        """No status.allocation: the message names the claim and says the scheduler has not."""
        with pytest.raises(ClaimNotAllocatedError) as raised:
            allocated_devices(ref(), ClaimAllocation(ref(), None), NODE)
        assert str(raised.value).startswith(
            "ResourceClaim vms/vm-nic has no status.allocation: the scheduler has not allocated"
        )

    def test_another_nodes_pool_is_refused(self):
        """A device of another node's pool names the claim, the device, the pool and this node."""
        claim = ClaimAllocation(ref(), (result(NIC, pool="other"),))
        with pytest.raises(ForeignAllocationError) as raised:
            allocated_devices(ref(), claim, NODE)
        assert str(raised.value) == (
            f"ResourceClaim vms/vm-nic is allocated device pci-0000-03-00-0 in pool other, but "
            f"this node is {NODE}: the pod was bound to another node than its devices'; "
            "delete the pod"
        )

    def test_admin_access_is_refused(self):
        """Admin access would share a device that vfio-pci hands to one VM: the fix is named."""
        entry = AllocationResult("nic", DRIVER_NAME, NODE, "pci-0000-03-00-0", admin_access=True)
        with pytest.raises(DraPrepareError) as raised:
            allocated_devices(ref(), ClaimAllocation(ref(), (entry,)), NODE)
        assert str(raised.value) == (
            "ResourceClaim vms/vm-nic asks for admin access to pci-0000-03-00-0; "
            f"{DRIVER_NAME} moves devices to vfio-pci for exclusive use and gives no admin "
            "access: remove adminAccess from the request"
        )

    def test_a_device_name_we_never_publish_is_refused(self):
        """Only pci-dddd-bb-dd-f names are ours."""
        entry = AllocationResult("nic", DRIVER_NAME, NODE, "gpu-0")
        with pytest.raises(InvalidDraDeviceNameError):
            allocated_devices(ref(), ClaimAllocation(ref(), (entry,)), NODE)

    def test_a_subrequest_is_kept_and_its_base_request_known(self):
        """``nic/fast`` (a prioritized-list subrequest) serves request ``nic``."""
        device = allocated(NIC, "nic/fast")
        assert device.request == "nic/fast"
        assert device.base_request == "nic"


class TestCheckpointDecisions:
    """Who holds what, what the engine must hold, what a restart keeps."""

    def _checkpoint(self, *claims: PreparedClaim) -> DraCheckpoint:
        checkpoint = DraCheckpoint()
        for claim in claims:
            checkpoint = checkpoint.with_claim(claim)
        return checkpoint

    def test_a_device_another_claim_holds_is_refused(self):
        """Two claims never share a device; the message names the holder."""
        other = PreparedClaim(ref("other", "uid-9"), (allocated(NIC),), PreparePhase.PREPARED)
        with pytest.raises(DeviceHeldError) as raised:
            check_free(ref(), [allocated(NIC)], self._checkpoint(other), {})
        assert str(raised.value).startswith(
            "device pci-0000-03-00-0 (0000:03:00.0) of ResourceClaim vms/vm-nic is held by "
            "ResourceClaim vms/other; "
        )

    def test_a_device_a_pci_device_claim_holds_is_refused(self):
        """A device is offered through one path: a PCIDeviceClaim's device is not prepared."""
        with pytest.raises(DeviceHeldError) as raised:
            check_free(ref(), [allocated(NIC)], DraCheckpoint(), {a(NIC): "a PCIDeviceClaim"})
        assert str(raised.value).startswith(
            "device pci-0000-03-00-0 (0000:03:00.0) of ResourceClaim vms/vm-nic is held by "
            "a PCIDeviceClaim; "
        )

    def test_the_claims_own_devices_are_free_to_it(self):
        """Preparing again a claim already recorded is no conflict."""
        mine = PreparedClaim(ref(), (allocated(NIC),), PreparePhase.PREPARING)
        check_free(ref(), [allocated(NIC)], self._checkpoint(mine), {})

    def test_engine_holds_every_device_except_those_being_returned(self):
        """Preparing and prepared claims are held; an unpreparing one is let go."""
        checkpoint = self._checkpoint(
            PreparedClaim(ref("p", "u1"), (allocated(NIC),), PreparePhase.PREPARING),
            PreparedClaim(ref("q", "u2"), (allocated(NIC2),), PreparePhase.UNPREPARING),
        )
        requests = engine_requests(checkpoint, GroupPolicy.GROUP)
        assert [(r.address, r.policy) for r in requests] == [(a(NIC), GroupPolicy.GROUP)]

    def test_restart_rolls_back_what_was_cut_short_and_keeps_the_rest(self):
        """Preparing → rolled back; prepared and unpreparing → kept."""
        cut = PreparedClaim(ref("p", "u1"), (allocated(NIC),), PreparePhase.PREPARING)
        done = PreparedClaim(ref("q", "u2"), (allocated(NIC2),), PreparePhase.PREPARED)
        going = PreparedClaim(ref("r", "u3"), (), PreparePhase.UNPREPARING)
        plan = restart_plan(self._checkpoint(cut, done, going))
        assert plan.rolled_back == (cut.ref,)
        assert set(plan.checkpoint.claims) == {"u2", "u3"}

    def test_prepare_failure_names_each_unbound_device_and_the_engines_reason(self):
        """The engine's message (which carries the fix) reaches the kubelet's error."""
        state = ClaimState(
            address=a(NIC),
            goal=Goal.PASSTHROUGH,
            original_driver=None,
            phase=ClaimPhase.WAITING,
            reason=Reason.GROUP_INCOMPLETE,
            message="IOMMU group 5 also holds 0000:03:00.1 (igb)",
        )
        failure = prepare_failure([allocated(NIC)], [Outcome(state=state, driver=None)])
        assert failure == (
            "pci-0000-03-00-0 (0000:03:00.0): IommuGroupIncomplete: "
            "IOMMU group 5 also holds 0000:03:00.1 (igb)"
        )
        bound = attrs.evolve(state, phase=ClaimPhase.BOUND, reason=Reason.BOUND)
        assert prepare_failure([allocated(NIC)], [Outcome(state=bound, driver=None)]) is None

    def test_prepare_failure_names_every_device_the_engine_left_out(self):
        """Two devices with no outcome: both named, one after the other, in one line."""
        failure = prepare_failure([allocated(NIC), allocated(NIC2)], [])
        assert failure == (
            "pci-0000-03-00-0 (0000:03:00.0): not driven by the claim engine; "
            "pci-0000-04-00-0 (0000:04:00.0): not driven by the claim engine"
        )


class TestContainerFiles:
    """The CDI spec and metadata a prepared claim's containers get."""

    def test_one_device_gets_vfio_nodes_and_kubevirts_variable(self):
        """The CDI device of a NIC: /dev/vfio/vfio, its group node, PCI_RESOURCE_…=address."""
        files = prepared_files(ref(), None, [function(NIC)], iommufd=False, metadata_root="/meta")
        spec = files.cdi_specs[cdi_spec_name("uid-1")]
        assert spec == {
            "cdiVersion": "0.3.0",
            "kind": "pci.devices.harvesterhci.io/vfio",
            "devices": [
                {
                    "name": "uid-1-pci-0000-03-00-0",
                    "containerEdits": {
                        "env": [
                            "PCI_RESOURCE_INTEL_COM_I210_GIGABIT_NETWORK_CONNECTION=0000:03:00.0"
                        ],
                        "deviceNodes": [
                            {"path": "/dev/vfio/vfio", "permissions": "mrw"},
                            {"path": "/dev/vfio/5", "permissions": "mrw"},
                        ],
                    },
                }
            ],
        }
        assert files.cdi_ids["pci-0000-03-00-0"] == (
            f"{CDI_KIND}=uid-1-pci-0000-03-00-0",
            f"{METADATA_KIND}=uid-1_nic",
        )

    def test_iommufd_nodes_only_where_the_kernel_has_them(self):
        """/dev/iommu and /dev/vfio/devices/vfioN join when both exist."""
        with_cdev = function(NIC, vfio_cdev="vfio3")
        nodes = lambda files: [  # noqa: E731 - a short reader for two asserts
            n["path"]
            for n in files.cdi_specs[cdi_spec_name("uid-1")]["devices"][0]["containerEdits"][
                "deviceNodes"
            ]
        ]
        on = prepared_files(ref(), None, [with_cdev], iommufd=True, metadata_root="/m")
        off = prepared_files(ref(), None, [with_cdev], iommufd=False, metadata_root="/m")
        assert nodes(on) == [
            "/dev/vfio/vfio",
            "/dev/vfio/5",
            "/dev/iommu",
            "/dev/vfio/devices/vfio3",
        ]
        assert nodes(off) == ["/dev/vfio/vfio", "/dev/vfio/5"]

    def test_env_joins_the_addresses_of_one_request_and_resource(self):
        """Two NICs of one request: one variable with both addresses, in address order."""
        env = container_env([function(NIC2), function(NIC)])
        assert env == {
            "nic": {"PCI_RESOURCE_INTEL_COM_I210_GIGABIT_NETWORK_CONNECTION": f"{NIC},{NIC2}"}
        }

    def test_requests_do_not_see_each_others_addresses(self):
        """A container names its requests; each request's variable lists only its devices."""
        env = container_env([function(NIC, "a"), function(NIC2, "b", group=6)])
        assert env["a"] == {"PCI_RESOURCE_INTEL_COM_I210_GIGABIT_NETWORK_CONNECTION": NIC}
        assert env["b"] == {"PCI_RESOURCE_INTEL_COM_I210_GIGABIT_NETWORK_CONNECTION": NIC2}

    def test_metadata_is_mounted_where_kep_5304_puts_it(self):
        """A directly referenced claim: resourceclaims/<claim>/<request>/<driver>-metadata.json."""
        files = prepared_files(
            ref(), None, [function(NIC, numa_node=1)], iommufd=False, metadata_root="/meta/"
        )
        assert files.cdi_specs[f"{DRIVER_NAME}_metadata_uid-1_nic.json"] == {
            "cdiVersion": "0.3.0",
            "kind": "pci.devices.harvesterhci.io/metadata",
            "devices": [
                {
                    "name": "uid-1_nic",
                    "containerEdits": {
                        "mounts": [
                            {
                                "hostPath": "/meta/vms_vm-nic/nic/metadata.json",
                                "containerPath": "/var/run/kubernetes.io/dra-device-attributes/"
                                "resourceclaims/vm-nic/nic/pci.devices.harvesterhci.io-metadata.json",
                                "options": ["ro", "bind"],
                            }
                        ]
                    },
                }
            ],
        }
        stream = files.metadata["vms_vm-nic/nic/metadata.json"]
        assert [d["apiVersion"] for d in stream] == [
            "metadata.resource.k8s.io/v1beta1",
            "metadata.resource.k8s.io/v1alpha1",
        ]
        (device,) = stream[0]["requests"][0]["devices"]
        assert device["attributes"] == {
            "resource.kubernetes.io/pciBusID": {"string": NIC},
            "resourceName": {"string": POOL},
            "iommuGroup": {"int": 5},
            "numaNode": {"int": 1},
        }
        assert stream[0]["metadata"] == {
            "name": "vm-nic",
            "namespace": "vms",
            "uid": "uid-1",
            "generation": 1,
        }

    def test_a_metadata_stream_is_kep_5304s_document_once_per_api_version(self):
        """Each document: kind, version, the claim, its request as allocated (subrequest kept)."""
        files = prepared_files(
            ref(), None, [function(NIC, "nic/fast", numa_node=0)], iommufd=False, metadata_root="/m"
        )
        body = {
            "metadata": {"name": "vm-nic", "namespace": "vms", "uid": "uid-1", "generation": 1},
            "requests": [
                {
                    "name": "nic/fast",
                    "devices": [
                        {
                            "driver": DRIVER_NAME,
                            "pool": NODE,
                            "name": "pci-0000-03-00-0",
                            "attributes": {
                                "resource.kubernetes.io/pciBusID": {"string": NIC},
                                "resourceName": {"string": POOL},
                                "iommuGroup": {"int": 5},
                                "numaNode": {"int": 0},
                            },
                        }
                    ],
                }
            ],
        }
        assert files.metadata["vms_vm-nic/nic/metadata.json"] == (
            {"kind": "DeviceMetadata", "apiVersion": "metadata.resource.k8s.io/v1beta1", **body},
            {"kind": "DeviceMetadata", "apiVersion": "metadata.resource.k8s.io/v1alpha1", **body},
        )

    @pytest.mark.parametrize(
        ("root", "host_path"),
        [
            ("/srv/X", "/srv/X/vms_vm-nic/nic/metadata.json"),
            ("/srv/", "/srv/vms_vm-nic/nic/metadata.json"),
        ],
    )
    def test_the_mounted_host_path_is_under_the_metadata_root_as_given(self, root, host_path):
        """Only a trailing slash of the root is dropped; its last folder (even ``X``) is kept."""
        files = prepared_files(ref(), None, [function(NIC)], iommufd=False, metadata_root=root)
        spec = files.cdi_specs[f"{DRIVER_NAME}_metadata_uid-1_nic.json"]
        (mount,) = spec["devices"][0]["containerEdits"]["mounts"]
        assert mount["hostPath"] == host_path

    def test_a_template_claim_is_found_by_the_pods_name_for_it(self):
        """Template claims: resourceclaimtemplates/<pod claim name>/… and podClaimName set."""
        files = prepared_files(ref(), "nic", [function(NIC)], iommufd=False, metadata_root="/m")
        spec = files.cdi_specs[f"{DRIVER_NAME}_metadata_uid-1_nic.json"]
        (mount,) = spec["devices"][0]["containerEdits"]["mounts"]
        assert "/resourceclaimtemplates/nic/nic/" in mount["containerPath"]
        assert files.metadata["vms_vm-nic/nic/metadata.json"][0]["podClaimName"] == "nic"

    def test_every_spec_file_of_a_claim_is_named_for_removal(self):
        """Unprepare removes the VFIO spec and one metadata spec per request."""
        claim = PreparedClaim(ref(), (allocated(NIC, "a"), allocated(NIC2, "b/x")))
        assert claim_file_names(claim) == (
            f"{DRIVER_NAME}-vfio_uid-1.json",
            f"{DRIVER_NAME}_metadata_uid-1_a.json",
            f"{DRIVER_NAME}_metadata_uid-1_b.json",
        )

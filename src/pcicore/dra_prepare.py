"""What the kubelet DRA plugin prepares for a ResourceClaim, and what the container gets.

The kubelet names a claim (namespace, name, uid) and nothing else; the plugin reads the claim's
``status.allocation`` and prepares the devices of ours in it. Every decision of that path is
here, as pure functions of values: which devices a claim asks of this node (`allocated_devices`),
whether another holder has them (`check_free`), what the claim engine must hold on ``vfio-pci``
(`engine_requests`), whether the engine's outcomes mean success (`prepare_failure`), what the
container receives (`prepared_files`: the CDI spec with ``/dev/vfio`` nodes and KubeVirt's
``PCI_RESOURCE_…`` environment, and the device metadata files of KEP-5304), and what a restart
keeps (`restart_plan`). The plugin's adapters read, call these, and write.

The plugin's own record of prepared claims is a `DraCheckpoint`: a claim is recorded as
``Preparing`` before any device moves and as ``Prepared`` once its files are written; it is
removed before its devices are returned. A claim found ``Preparing`` after a restart was never
answered, so it is rolled back (the kubelet asks again if it still wants it); a ``Prepared`` one
is held on ``vfio-pci`` and its files are written again (``/var/run/cdi`` is gone after a reboot,
the kubelet's own checkpoint is not).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from pcicore.address import PciAddress
from pcicore.device import IommuGroup
from pcicore.dra import DRIVER_NAME, address_of
from pcicore.engine import ClaimRequest, Outcome
from pcicore.errors import (
    ClaimNotAllocatedError,
    ClaimReplacedError,
    DeviceHeldError,
    DraPrepareError,
    ForeignAllocationError,
)
from pcicore.naming import ResourceName
from pcicore.policy import GroupPolicy
from pcicore.resources import DEVICE_PERMISSIONS, IOMMUFD, VFIO_CONTAINER, env_var_name

JsonDocument = dict[str, Any]

CDI_VERSION: Final = "0.3.0"
"""The CDI spec version of our files: the lowest that has what they use (``env``,
``deviceNodes`` with ``path``, bind ``mounts`` with ``options``), so every CDI-aware runtime
(containerd 1.7+, CRI-O 1.23+) reads them."""

CDI_CLASS: Final = "vfio"
CDI_KIND: Final = f"{DRIVER_NAME}/{CDI_CLASS}"
"""``vendor/class`` of the CDI devices that carry the VFIO nodes and the environment."""

METADATA_CLASS: Final = "metadata"
METADATA_KIND: Final = f"{DRIVER_NAME}/{METADATA_CLASS}"
"""``vendor/class`` of the CDI devices that mount the device metadata files (KEP-5304)."""

METADATA_API_VERSIONS: Final = (
    "metadata.resource.k8s.io/v1beta1",
    "metadata.resource.k8s.io/v1alpha1",
)
"""The device-metadata API versions a metadata file holds, newest first, as the kubelet-plugin
library of Kubernetes 1.37 writes them (k8s.io/dynamic-resource-allocation/api/metadata)."""

METADATA_CONTAINER_DIR: Final = "/var/run/kubernetes.io/dra-device-attributes"
PCI_BUS_ID_ATTRIBUTE: Final = "resource.kubernetes.io/pciBusID"
"""The standard attribute of a PCI device's address (k8s.io/dynamic-resource-allocation)."""

_UID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class InvalidClaimReferenceError(DraPrepareError):
    """A namespace, name, uid or request name from the kubelet or the API is not one.

    These texts become parts of file names, so each is checked before it is used.
    """

    def __init__(self, what: str, text: str) -> None:
        """Name the field and its value (shortened)."""
        shown = text if len(text) <= 64 else text[:61] + "..."  # noqa: PLR2004 - display limit
        super().__init__(
            f"invalid ResourceClaim {what} {shown!r}: expected what Kubernetes allows there "
            "(a DNS label or subdomain, a uid); the kubelet or the API sent something else"
        )


def _checked(pattern: re.Pattern[str], what: str, text: str) -> str:
    if pattern.fullmatch(text) is None:
        raise InvalidClaimReferenceError(what, text)
    return text


@attrs.frozen
class DraClaimRef:
    """The identity of a ResourceClaim, as the kubelet passes it.

    Attributes:
        namespace: Its namespace (a DNS label).
        name: Its name (a DNS subdomain).
        uid: Its uid: two claims of one name at different times have different uids.
    """

    namespace: str
    name: str
    uid: str

    @classmethod
    def parse(cls, namespace: str, name: str, uid: str) -> DraClaimRef:
        """Check the three texts (they become file names).

        Raises:
            InvalidClaimReferenceError: one is not what Kubernetes allows.
        """
        return cls(
            _checked(_DNS_LABEL, "namespace", namespace),
            _checked(_DNS_SUBDOMAIN, "name", name),
            _checked(_UID, "uid", uid),
        )

    def __str__(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"


@attrs.frozen
class AllocationResult:
    """One entry of ``status.allocation.devices.results`` (any driver's).

    Attributes:
        request: The request (``gpu``, or ``gpu/high-memory`` for a subrequest).
        driver: The DRA driver of the device.
        pool: Its pool (ours: the node name).
        device: Its name in the pool.
        admin_access: Whether the claim asked for admin access (no exclusive use).
    """

    request: str
    driver: str
    pool: str
    device: str
    admin_access: bool = False


@attrs.frozen
class ClaimAllocation:
    """A ResourceClaim as the API server shows it.

    Attributes:
        ref: Its identity (with the uid the API server has now).
        results: Its allocation results, or ``None`` when it is not allocated.
        pod_claim_name: The pod's name for it when a template made it
            (annotation ``resource.kubernetes.io/pod-claim-name``).
    """

    ref: DraClaimRef
    results: tuple[AllocationResult, ...] | None
    pod_claim_name: str | None = None


@attrs.frozen(order=True)
class AllocatedDevice:
    """One of our devices allocated to a claim.

    Attributes:
        address: The PCI function (parsed from the device name).
        request: The claim's request it serves (may name a subrequest: ``req/sub``).
        pool: The pool (this node's name).
        name: The device name (``pci-0000-03-00-0``).
    """

    address: PciAddress
    request: str = attrs.field(order=False)
    pool: str = attrs.field(order=False)
    name: str = attrs.field(order=False)

    @property
    def base_request(self) -> str:
        """The request without a subrequest (what file names and metadata paths use)."""
        return self.request.partition("/")[0]


def allocated_devices(
    asked: DraClaimRef, claim: ClaimAllocation | None, node: str
) -> tuple[AllocatedDevice, ...]:
    """The devices of our driver that ``claim`` is allocated on this node, in address order.

    ``claim`` is what the API server returned for ``asked``'s namespace and name (``None``:
    not found). Results of other drivers are not ours to prepare and are left out.

    Raises:
        ClaimReplacedError: the claim is gone, or is another object (a different uid).
        ClaimNotAllocatedError: it has no allocation.
        ForeignAllocationError: a result of ours names another node's pool.
        DraPrepareError: a result of ours asks for admin access, which this driver does not
            give (moving a device to vfio-pci is exclusive use).
        InvalidDraDeviceNameError: a result of ours names a device we never publish.
        InvalidClaimReferenceError: a request name is not a DNS label.
    """
    if claim is None or claim.ref.uid != asked.uid:
        raise ClaimReplacedError(str(asked), asked.uid, claim.ref.uid if claim else None)
    if claim.results is None:
        raise ClaimNotAllocatedError(str(asked))
    found = []
    for result in claim.results:
        if result.driver != DRIVER_NAME:
            continue
        if result.pool != node:
            raise ForeignAllocationError(str(asked), result.device, result.pool, node)
        if result.admin_access:
            raise DraPrepareError(
                f"ResourceClaim {asked} asks for admin access to {result.device}; "
                f"{DRIVER_NAME} moves devices to vfio-pci for exclusive use and gives no admin "
                "access: remove adminAccess from the request"
            )
        for part in result.request.split("/"):
            _checked(_DNS_LABEL, "request name", part)
        found.append(
            AllocatedDevice(address_of(result.device), result.request, result.pool, result.device)
        )
    return tuple(sorted(found))


# --- The plugin's checkpoint ---------------------------------------------------------------


class PreparePhase(enum.Enum):
    """How far the preparation of a claim got."""

    PREPARING = "Preparing"
    """Recorded before any device moved; not yet answered to the kubelet."""
    PREPARED = "Prepared"
    """Its devices are on vfio-pci and its files written; the kubelet was (or will be) told."""
    UNPREPARING = "Unpreparing"
    """Being returned: its devices go back to their drivers, then the record goes. It keeps
    holding its devices (no other claim gets them) until they are back."""


@attrs.frozen
class PreparedClaim:
    """A claim the plugin has prepared, or is preparing.

    Attributes:
        ref: The claim.
        devices: Its devices of ours, in address order.
        phase: How far its preparation got.
        pod_claim_name: The pod's name for it (template-made claims), for metadata paths.
    """

    ref: DraClaimRef
    devices: tuple[AllocatedDevice, ...]
    phase: PreparePhase = PreparePhase.PREPARING
    pod_claim_name: str | None = None


def _by_uid(claims: Mapping[str, PreparedClaim]) -> Mapping[str, PreparedClaim]:
    return dict(sorted(claims.items()))


@attrs.frozen
class DraCheckpoint:
    """Every claim the plugin holds devices for, by uid (a value: changes return a new one).

    Attributes:
        claims: Each claim by its uid.
    """

    claims: Mapping[str, PreparedClaim] = attrs.field(factory=dict, converter=_by_uid)

    def with_claim(self, claim: PreparedClaim) -> DraCheckpoint:
        """With ``claim`` added, or replacing the claim of its uid."""
        return DraCheckpoint({**self.claims, claim.ref.uid: claim})

    def without(self, uid: str) -> DraCheckpoint:
        """Without the claim of ``uid``."""
        return DraCheckpoint({u: c for u, c in self.claims.items() if u != uid})

    def holder_of(self, address: PciAddress) -> PreparedClaim | None:
        """The claim that holds the device at ``address``, if any."""
        for claim in self.claims.values():
            if any(device.address == address for device in claim.devices):
                return claim
        return None


def check_free(
    ref: DraClaimRef,
    devices: Iterable[AllocatedDevice],
    checkpoint: DraCheckpoint,
    held: Mapping[PciAddress, str],
) -> None:
    """Refuse devices another claim or holder has on this node.

    ``held`` names what else holds a device (``PCIDeviceClaim …`` for the device plugin's
    claims): a device is offered through one path at a time.

    Raises:
        DeviceHeldError: a device is held by another ResourceClaim or by ``held``.
    """
    for device in devices:
        other = checkpoint.holder_of(device.address)
        if other is not None and other.ref.uid != ref.uid:
            raise DeviceHeldError(
                str(ref), f"{device.name} ({device.address})", f"ResourceClaim {other.ref}"
            )
        if device.address in held:
            raise DeviceHeldError(
                str(ref), f"{device.name} ({device.address})", held[device.address]
            )


def engine_requests(checkpoint: DraCheckpoint, policy: GroupPolicy) -> list[ClaimRequest]:
    """What the claim engine must hold on ``vfio-pci``: every device of every claim recorded.

    The engine is level-triggered: given this list, it binds what is missing and returns every
    device it moved for a claim no longer recorded.
    """
    return sorted(
        ClaimRequest(device.address, policy)
        for claim in checkpoint.claims.values()
        if claim.phase is not PreparePhase.UNPREPARING
        for device in claim.devices
    )


def prepare_failure(devices: Sequence[AllocatedDevice], outcomes: Sequence[Outcome]) -> str | None:
    """Why the engine's ``outcomes`` leave ``devices`` unusable, or ``None`` when all are bound.

    One line naming each device that is not on ``vfio-pci``, with the engine's reason and
    message (which carries the fix: the missing group member, the busy device, the refusal).
    """
    by_address = {outcome.address: outcome for outcome in outcomes}
    problems = []
    for device in devices:
        outcome = by_address.get(device.address)
        if outcome is None:
            problems.append(f"{device.name} ({device.address}): not driven by the claim engine")
        elif not outcome.bound:
            state = outcome.state
            problems.append(
                f"{device.name} ({device.address}): {state.reason.value}: {state.message}"
            )
    return "; ".join(problems) or None


@attrs.frozen
class RestartPlan:
    """What the plugin does with its checkpoint when it starts.

    Attributes:
        checkpoint: The claims it keeps: prepared ones (held on vfio-pci, files rewritten) and
            ones being unprepared (their devices are returned; the kubelet's retry of
            NodeUnprepareResources then finds them back and drops the record).
        rolled_back: The claims whose preparation was cut short; their devices are returned.
    """

    checkpoint: DraCheckpoint
    rolled_back: tuple[DraClaimRef, ...]


def restart_plan(checkpoint: DraCheckpoint) -> RestartPlan:
    """Keep the prepared claims, roll back the ones cut short in the middle of a prepare."""
    kept = {
        uid: claim
        for uid, claim in checkpoint.claims.items()
        if claim.phase is not PreparePhase.PREPARING
    }
    dropped = tuple(claim.ref for uid, claim in checkpoint.claims.items() if uid not in kept)
    return RestartPlan(DraCheckpoint(kept), dropped)


# --- What the container gets ----------------------------------------------------------------


@attrs.frozen
class PreparedFunction:
    """An allocated device on ``vfio-pci``, with the host facts its container needs.

    Attributes:
        device: The allocated device.
        resource_name: Its ``resourceName`` (the device plugin's pool name for its kind).
        iommu_group: Its IOMMU group (``/dev/vfio/<group>``).
        vfio_cdev: Its iommufd character device (``vfio3``), where the kernel has one.
        numa_node: Its NUMA node, where the kernel reports one.
    """

    device: AllocatedDevice
    resource_name: ResourceName
    iommu_group: IommuGroup
    vfio_cdev: str | None = None
    numa_node: int | None = None


@attrs.frozen
class PreparedFiles:
    """The files that hand a prepared claim's devices to its containers.

    Attributes:
        cdi_specs: CDI spec documents by file name (in the CDI folder).
        metadata: Device-metadata streams (one document per API version) by path relative to
            the plugin's metadata folder.
        cdi_ids: The CDI device ids of each device (by device name), for the kubelet.
    """

    cdi_specs: Mapping[str, JsonDocument]
    metadata: Mapping[str, tuple[JsonDocument, ...]]
    cdi_ids: Mapping[str, tuple[str, ...]]


def cdi_spec_name(uid: str) -> str:
    """The file of a claim's VFIO CDI spec, as CDI names transient specs (``vendor-class_id``)."""
    return f"{DRIVER_NAME}-{CDI_CLASS}_{uid}.json"


def metadata_spec_name(uid: str, request: str) -> str:
    """The file of the CDI spec that mounts one request's metadata (the kubelet library's form)."""
    return f"{DRIVER_NAME}_{METADATA_CLASS}_{uid}_{request}.json"


def metadata_file(ref: DraClaimRef, request: str) -> str:
    """Where one request's metadata lives, relative to the metadata folder."""
    return f"{claim_metadata_dir(ref)}/{request}/metadata.json"


def claim_metadata_dir(ref: DraClaimRef) -> str:
    """The folder of a claim's metadata files, relative to the metadata folder."""
    return f"{ref.namespace}_{ref.name}"


def claim_file_names(claim: PreparedClaim) -> tuple[str, ...]:
    """Every CDI spec file name a prepared claim has (to remove them on unprepare)."""
    requests = sorted({device.base_request for device in claim.devices})
    return (
        cdi_spec_name(claim.ref.uid),
        *(metadata_spec_name(claim.ref.uid, request) for request in requests),
    )


def metadata_container_path(ref: DraClaimRef, pod_claim_name: str | None, request: str) -> str:
    """Where a request's metadata file appears in the container (KEP-5304's layout)."""
    file = f"{DRIVER_NAME}-metadata.json"
    if pod_claim_name:
        return f"{METADATA_CONTAINER_DIR}/resourceclaimtemplates/{pod_claim_name}/{request}/{file}"
    return f"{METADATA_CONTAINER_DIR}/resourceclaims/{ref.name}/{request}/{file}"


def cdi_device_name(uid: str, device: AllocatedDevice) -> str:
    """The CDI device of one allocated device: ``<claim uid>-<device name>``."""
    return f"{uid}-{device.name}"


def container_env(functions: Sequence[PreparedFunction]) -> dict[str, dict[str, str]]:
    """KubeVirt's ``PCI_RESOURCE_<resource>`` variables, per request.

    A container sees the devices of the requests it names; the variable of one resource lists
    every address of that resource in the request, comma-joined, in address order, the form
    virt-launcher reads (and the device plugin's Allocate gives).
    """
    grouped: dict[str, dict[str, list[str]]] = {}
    for function in sorted(functions, key=lambda f: f.device.address):
        per_request = grouped.setdefault(function.device.request, {})
        per_request.setdefault(env_var_name(function.resource_name), []).append(
            str(function.device.address)
        )
    return {
        request: {name: ",".join(addresses) for name, addresses in sorted(variables.items())}
        for request, variables in sorted(grouped.items())
    }


def _device_nodes(function: PreparedFunction, *, iommufd: bool) -> list[JsonDocument]:
    paths = [VFIO_CONTAINER, f"/dev/vfio/{function.iommu_group}"]
    if iommufd and function.vfio_cdev is not None:
        paths += [IOMMUFD, f"/dev/vfio/devices/{function.vfio_cdev}"]
    return [{"path": path, "permissions": DEVICE_PERMISSIONS} for path in paths]


def _attributes(function: PreparedFunction) -> JsonDocument:
    attributes: JsonDocument = {
        PCI_BUS_ID_ATTRIBUTE: {"string": str(function.device.address)},
        "resourceName": {"string": function.resource_name},
        "iommuGroup": {"int": int(function.iommu_group)},
    }
    if function.numa_node is not None:
        attributes["numaNode"] = {"int": function.numa_node}
    return attributes


def metadata_documents(
    ref: DraClaimRef,
    pod_claim_name: str | None,
    request: str,
    functions: Sequence[PreparedFunction],
) -> tuple[JsonDocument, ...]:
    """One request's device metadata, once per API version (a JSON stream, newest first)."""
    meta: JsonDocument = {
        "name": ref.name,
        "namespace": ref.namespace,
        "uid": ref.uid,
        "generation": 1,
    }
    body: JsonDocument = {"metadata": meta}
    if pod_claim_name:
        body["podClaimName"] = pod_claim_name
    body["requests"] = [
        {
            "name": request,
            "devices": [
                {
                    "driver": DRIVER_NAME,
                    "pool": function.device.pool,
                    "name": function.device.name,
                    "attributes": _attributes(function),
                }
                for function in functions
            ],
        }
    ]
    return tuple(
        {"kind": "DeviceMetadata", "apiVersion": version, **body}
        for version in METADATA_API_VERSIONS
    )


def prepared_files(
    ref: DraClaimRef,
    pod_claim_name: str | None,
    functions: Sequence[PreparedFunction],
    *,
    iommufd: bool,
    metadata_root: str,
) -> PreparedFiles:
    """The CDI specs and metadata files of a prepared claim, and each device's CDI ids.

    One CDI device per allocated PCI function gives the container ``/dev/vfio/vfio``, the
    function's ``/dev/vfio/<group>`` (with iommufd: ``/dev/iommu`` and its
    ``/dev/vfio/devices/vfioN``) and the ``PCI_RESOURCE_…`` variables of its request; a runtime
    applying two devices of one group adds each node once. One more CDI device per request
    mounts its metadata file read-only at KEP-5304's path (``metadata_root`` is the host folder
    the metadata files are written to).
    """
    env = container_env(functions)
    ordered = sorted(functions, key=lambda f: f.device.address)
    devices = []
    ids: dict[str, list[str]] = {}
    for function in ordered:
        name = cdi_device_name(ref.uid, function.device)
        variables = env[function.device.request]
        devices.append(
            {
                "name": name,
                "containerEdits": {
                    "env": [f"{key}={value}" for key, value in variables.items()],
                    "deviceNodes": _device_nodes(function, iommufd=iommufd),
                },
            }
        )
        ids[function.device.name] = [f"{CDI_KIND}={name}"]
    specs: dict[str, JsonDocument] = {
        cdi_spec_name(ref.uid): {"cdiVersion": CDI_VERSION, "kind": CDI_KIND, "devices": devices}
    }
    metadata: dict[str, tuple[JsonDocument, ...]] = {}
    for request in sorted({f.device.base_request for f in ordered}):
        members = [f for f in ordered if f.device.base_request == request]
        relative = metadata_file(ref, request)
        metadata[relative] = metadata_documents(
            ref, pod_claim_name, members[0].device.request, members
        )
        device = f"{ref.uid}_{request}"
        specs[metadata_spec_name(ref.uid, request)] = {
            "cdiVersion": CDI_VERSION,
            "kind": METADATA_KIND,
            "devices": [
                {
                    "name": device,
                    "containerEdits": {
                        "mounts": [
                            {
                                "hostPath": f"{metadata_root.rstrip('/')}/{relative}",
                                "containerPath": metadata_container_path(
                                    ref, pod_claim_name, request
                                ),
                                "options": ["ro", "bind"],
                            }
                        ]
                    },
                }
            ],
        }
        for member in members:
            ids[member.device.name].append(f"{METADATA_KIND}={device}")
    return PreparedFiles(
        cdi_specs=specs,
        metadata=metadata,
        cdi_ids={name: tuple(values) for name, values in ids.items()},
    )


def parse_pod_claim_name(text: str | None) -> str | None:
    """The pod's name for a template-made claim (a DNS label), or ``None`` when absent.

    Raises:
        InvalidClaimReferenceError: the annotation holds something else.
    """
    if not text:
        return None
    return _checked(_DNS_LABEL, "pod claim name", text)

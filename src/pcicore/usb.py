"""USB passthrough: what a USB device's object says, when it is orphaned, what a claim decides.

Harvester (``devices.harvesterhci.io/v1beta1``) publishes every USB device of a node as a
``USBDevice`` and enables one for VMs when a ``USBDeviceClaim`` of the same name exists; KubeVirt
then schedules on one extended resource per device. The rules here are that contract, byte for
byte where the cluster sees a string:

- name ``<node>-<vendor>-<product>-<bus><device>`` in lower-case hex and 3-digit decimals
  (``node1-0951-1666-001002``), the device path ``/dev/bus/usb/001/002`` being the identity;
- ``resourceName`` ``kubevirt.io/<name>`` (one resource per device, so a VM picks one of two
  identical sticks);
- ``description`` ``<product> (<vendor>)`` from ``usb.ids``, ``Unknown (<vendor>)``, or
  ``Unknown vvvv:pppp``, followed by `` [<the device's own product string>]`` when it has one;
- ``classType``: the name of ``bDeviceClass``, or of the first interface's class when the
  device defines its class per interface (``bDeviceClass`` 00);
- a device that left the node while a claim holds it stays as ``status: orphaned`` with a
  message, until the claim is deleted; one that nobody claims is deleted.

The kubelet-facing part (`UsbPluginDevice`, `allocate_usb`) follows KubeVirt's USB contract:
``USB_RESOURCE_<resourceName, upper-cased, '/' and '.' as '_'>`` = ``bus:device`` (decimal,
comma-joined) and the device node handed to the container with ``mrw``.

Everything here is pure: devices, names and claims in; statuses, plans and decisions out.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Final

import attrs

from pcicore.address import PciAddress
from pcicore.admission import Verdict, VmiFacts
from pcicore.cluster_claim import ClaimEvent
from pcicore.conditions import Condition, ConditionStatus, find_condition
from pcicore.device import NodeName
from pcicore.errors import InvalidUsbDeviceNameError
from pcicore.naming import ResourceName
from pcicore.resources import (
    ContainerAllocation,
    DeviceNode,
    Health,
    requested_devices,
    resource_env_var,
)
from pcicore.usbids import UsbIds

USB_RESOURCE_PREFIX: Final = "kubevirt.io/"
"""The domain of every USB resourceName (Harvester's ``KubeVirtResourcePrefix``)."""

USB_ENV_PREFIX: Final = "USB_RESOURCE"
"""KubeVirt's ``v1.USBResourcePrefix``: virt-launcher reads ``USB_RESOURCE_<resource>``."""

ORPHANED: Final = "orphaned"
"""``status.status`` of a USBDevice whose device left the node while a claim holds it."""

HARVESTER_USB_FINALIZER: Final = "wrangler.cattle.io/usbClaimClient-device-claim-remove"
"""The finalizer Harvester's controller (wrangler ``OnRemove``) puts on every USBDeviceClaim."""

HUB_CLASS: Final = 0x09
"""``bDeviceClass`` of a hub."""

_PER_INTERFACE: Final = 0x00
# <node>-vvvv-pppp-BBBDDD: the node part is a DNS subdomain (it may hold '-' and '.').
_USB_NAME: Final = re.compile(
    r"(?P<node>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)-(?P<vendor>[0-9a-f]{4})-(?P<product>[0-9a-f]{4})"
    r"-(?P<bus>[0-9]{3})(?P<dev>[0-9]{3})"
)
_NAME_MAX: Final = 253


@attrs.frozen
class UsbDevice:
    """One USB device (not a root hub, not an interface) as sysfs shows it.

    Attributes:
        port: The kernel's name of the device (``1-1.2``: bus 1, port 1, then port 2 of a hub).
        bus: ``busnum``.
        devnum: ``devnum`` (the kernel numbers devices anew each time one is plugged in).
        vendor_id: ``idVendor``.
        product_id: ``idProduct``.
        device_class: ``bDeviceClass`` (0: defined per interface).
        interface_classes: ``bInterfaceClass`` of each interface of the active configuration,
            in interface order.
        product: The device's own product string (``product``), if it reports one.
        manufacturer: The device's own manufacturer string (``manufacturer``), if any.
        controller: The PCI host controller the device hangs off (``None``: not on PCI).
    """

    port: str
    bus: int
    devnum: int
    vendor_id: int
    product_id: int
    device_class: int = 0
    interface_classes: tuple[int, ...] = ()
    product: str | None = None
    manufacturer: str | None = None
    controller: PciAddress | None = None

    @property
    def device_path(self) -> str:
        """The device node, ``/dev/bus/usb/BBB/DDD``."""
        return device_path(self.bus, self.devnum)


def device_path(bus: int, devnum: int) -> str:
    """``/dev/bus/usb/BBB/DDD`` (the kernel's ``usb_devnode``: 3-digit decimals)."""
    return f"/dev/bus/usb/{bus:03d}/{devnum:03d}"


_DEVICE_PATH: Final = re.compile(r"/dev/bus/usb/([0-9]{3})/([0-9]{3})")


def parse_device_path(text: str) -> tuple[int, int] | None:
    """Bus and device number of ``/dev/bus/usb/BBB/DDD`` (``None``: not such a path).

    A ``devicePath`` read from the cluster is untrusted: only this form reaches a path join.
    """
    match = _DEVICE_PATH.fullmatch(text)
    return None if match is None else (int(match[1]), int(match[2]))


def usb_device_name(node: NodeName, device: UsbDevice) -> str:
    """The USBDevice (and USBDeviceClaim) name: ``<node>-vvvv-pppp-BBBDDD``."""
    return (
        f"{node}-{device.vendor_id:04x}-{device.product_id:04x}-{device.bus:03d}{device.devnum:03d}"
    )


@attrs.frozen
class UsbDeviceName:
    """A USBDevice name taken apart (parsed from an untrusted claim name).

    Attributes:
        node: The node part.
        vendor_id: The vendor id.
        product_id: The product id.
        bus: The bus number.
        devnum: The device number.
    """

    node: str
    vendor_id: int
    product_id: int
    bus: int
    devnum: int

    @classmethod
    def parse(cls, text: str) -> UsbDeviceName:
        """Take ``text`` apart.

        Raises:
            InvalidUsbDeviceNameError: ``text`` is not of the form ``<node>-vvvv-pppp-BBBDDD``.
        """
        match = _USB_NAME.fullmatch(text) if len(text) <= _NAME_MAX else None
        if match is None:
            raise InvalidUsbDeviceNameError(text)
        return cls(
            match["node"],
            int(match["vendor"], 16),
            int(match["product"], 16),
            int(match["bus"]),
            int(match["dev"]),
        )


def usb_name_node(name: str) -> str | None:
    """The node a USBDevice name names (``None``: not a USBDevice name)."""
    try:
        return UsbDeviceName.parse(name).node
    except InvalidUsbDeviceNameError:
        return None


def usb_resource_name(name: str) -> ResourceName:
    """The resource KubeVirt schedules one USB device on: ``kubevirt.io/<USBDevice name>``."""
    return ResourceName(USB_RESOURCE_PREFIX + name)


def usb_env_var(resource: ResourceName) -> str:
    """The variable virt-launcher reads a USB resource's ``bus:device`` list from."""
    return resource_env_var(USB_ENV_PREFIX, resource)


def usb_description(ids: UsbIds, device: UsbDevice) -> str:
    """``<product> (<vendor>)`` from ``usb.ids``, then `` [<product string>]`` when there is one.

    An unknown product is ``Unknown (<vendor>)``, an unknown vendor ``Unknown vvvv:pppp``
    (Harvester's ``usbid.Describe``).
    """
    vendor = ids.vendor(device.vendor_id)
    if vendor is None:
        text = f"Unknown {device.vendor_id:04x}:{device.product_id:04x}"
    else:
        text = f"{ids.product(device.vendor_id, device.product_id) or 'Unknown'} ({vendor})"
    own = (device.product or "").strip()
    return f"{text} [{own}]" if own else text


def usb_class_type(ids: UsbIds, device: UsbDevice) -> str:
    """What kind of device it is (``Mass Storage``), from its class or its first interface's.

    A device of class 00 defines its class per interface; with no interface read, or a class
    ``usb.ids`` does not name, the class is shown as ``Class cc``.
    """
    klass = device.device_class
    if klass == _PER_INTERFACE and device.interface_classes:
        klass = device.interface_classes[0]
    return ids.class_name(klass) or f"Class {klass:02x}"


@attrs.frozen
class UsbStatus:
    """What a USBDevice's status says (Harvester's fields, in its order).

    Attributes:
        vendor_id: ``vendorID``, 4 lower-case hex digits.
        product_id: ``productID``, 4 lower-case hex digits.
        node_name: ``nodeName``.
        resource_name: ``resourceName``.
        device_path: ``devicePath``.
        description: ``description``.
        pci_address: ``pciAddress``: the host controller's address (empty: not on PCI).
        class_type: ``classType``.
        enabled: ``enabled``: a claim holds the device for VMs.
        status: ``status``: empty, or `ORPHANED` when the device left the node.
        message: ``message``: why it is orphaned and what to do.
    """

    vendor_id: str
    product_id: str
    node_name: str
    resource_name: str
    device_path: str
    description: str
    pci_address: str = ""
    class_type: str = ""
    enabled: bool = False
    status: str = ""
    message: str = ""

    @property
    def orphaned(self) -> bool:
        """Whether the device left the node."""
        return self.status == ORPHANED


def usb_status(node: NodeName, device: UsbDevice, ids: UsbIds) -> UsbStatus:
    """The status of a device present on ``node`` (not enabled: claims decide that)."""
    return UsbStatus(
        vendor_id=f"{device.vendor_id:04x}",
        product_id=f"{device.product_id:04x}",
        node_name=node,
        resource_name=usb_resource_name(usb_device_name(node, device)),
        device_path=device.device_path,
        description=usb_description(ids, device),
        pci_address="" if device.controller is None else str(device.controller),
        class_type=usb_class_type(ids, device),
    )


def usb_statuses(node: NodeName, devices: Iterable[UsbDevice], ids: UsbIds) -> dict[str, UsbStatus]:
    """Each present device's status by object name (hubs included, as Harvester lists them)."""
    return {usb_device_name(node, device): usb_status(node, device, ids) for device in devices}


def orphaned_status(name: str, last: UsbStatus) -> UsbStatus:
    """``last`` marked orphaned, with a message that says what to do."""
    return attrs.evolve(
        last,
        status=ORPHANED,
        message=(
            f"the USB device at {last.device_path} left node {last.node_name} (unplugged, or "
            "renumbered after a re-plug or reboot); delete USBDeviceClaim "
            f"{name} and claim the device under its new USBDevice name"
        ),
    )


@attrs.frozen
class UsbWrites:
    """Which USBDevice objects to create, whose status to write, which to delete.

    Attributes:
        create: New objects with their status, by name.
        status: Existing objects whose status differs, by name.
        delete: Objects whose device left and that no claim holds, sorted.
    """

    create: tuple[tuple[str, UsbStatus], ...] = ()
    status: tuple[tuple[str, UsbStatus], ...] = ()
    delete: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether nothing is to be written."""
        return not (self.create or self.status or self.delete)


def desired_usb_objects(
    present: Mapping[str, UsbStatus],
    observed: Mapping[str, UsbStatus | None],
    *,
    enabled: Collection[str],
    held: Collection[str],
) -> dict[str, UsbStatus]:
    """Every USBDevice the node should have, with its status.

    ``present`` are the devices on the node now, ``observed`` the objects as last written
    (``None``: no status yet), ``enabled`` the names a live claim enables, ``held`` every name
    some claim names (a deleting one included). A present device is enabled when claimed; a
    gone one stays, orphaned, while a claim holds it.
    """
    desired = {
        name: attrs.evolve(status, enabled=name in enabled) for name, status in present.items()
    }
    for name, last in observed.items():
        if name in desired or name not in held or last is None:
            continue
        desired[name] = attrs.evolve(orphaned_status(name, last), enabled=name in enabled)
    return desired


def plan_usb_writes(
    desired: Mapping[str, UsbStatus], observed: Mapping[str, UsbStatus | None]
) -> UsbWrites:
    """The least writes that make ``observed`` (name → last status) equal ``desired``."""
    return UsbWrites(
        create=tuple(sorted((n, s) for n, s in desired.items() if n not in observed)),
        status=tuple(
            sorted((n, s) for n, s in desired.items() if n in observed and observed[n] != s)
        ),
        delete=tuple(sorted(name for name in observed if name not in desired)),
    )


# --- Claims -----------------------------------------------------------------------------------

READY: Final = "Ready"
"""The condition type of a USBDeviceClaim."""


class UsbClaimReason(enum.Enum):
    """Why a USBDeviceClaim stands where it does (the ``Ready`` condition's reason)."""

    ENABLED = "Enabled"
    """The device is enabled and advertised to the kubelet."""
    DEVICE_ORPHANED = "DeviceOrphaned"
    """The device left the node."""
    CONTROLLER_CLAIMED = "ControllerClaimed"
    """Its PCI host controller is claimed for PCI passthrough."""


@attrs.frozen
class UsbClaim:
    """One USBDeviceClaim as read from the cluster.

    Attributes:
        name: The object's name (the USBDevice's name).
        uid: Its uid (Events refer to it).
        generation: ``metadata.generation``.
        deleting: It was deleted and finalizers hold it.
        user_name: ``spec.userName``.
        node_name: ``status.nodeName`` as last written.
        pci_address: ``status.pciAddress`` as last written.
        conditions: ``status.conditions``.
        finalizers: ``metadata.finalizers``.
        resource_version: ``metadata.resourceVersion`` (a finalizer change is made against it).
    """

    name: str
    uid: str = ""
    generation: int = 0
    deleting: bool = False
    user_name: str = ""
    node_name: str = ""
    pci_address: str = ""
    conditions: tuple[Condition, ...] = ()
    finalizers: tuple[str, ...] = ()
    resource_version: str = ""


def released_finalizers(claim: UsbClaim) -> tuple[str, ...] | None:
    """The finalizers a deleted claim keeps once its device is disabled (``None``: no change).

    Harvester's controller held its claims with `HARVESTER_USB_FINALIZER` until it had disabled
    the device; after the switch nothing else removes it, so the agent of the device's node
    does, once the USBDevice says ``enabled: false``.
    """
    if not claim.deleting or HARVESTER_USB_FINALIZER not in claim.finalizers:
        return None
    return tuple(f for f in claim.finalizers if f != HARVESTER_USB_FINALIZER)


@attrs.frozen
class UsbClaimSet:
    """What the claims of a node's USB devices hold.

    Attributes:
        held: Names some claim names (a deleting one too): their objects stay when orphaned.
        enabled: Names a live claim enables.
        controller_claimed: Names whose PCI host controller a PCIDeviceClaim names (refused).
    """

    held: frozenset[str] = frozenset()
    enabled: frozenset[str] = frozenset()
    controller_claimed: frozenset[str] = frozenset()


def usb_claim_set(
    claims: Iterable[UsbClaim],
    known: Mapping[str, UsbStatus | None],
    claimed_controllers: Collection[PciAddress],
) -> UsbClaimSet:
    """Which of the node's devices (``known``: name → status) the ``claims`` hold and enable.

    A live claim enables its device unless a PCIDeviceClaim names the device's host controller
    (``claimed_controllers``): passthrough of the controller takes every device behind it.
    """
    controllers = {str(address) for address in claimed_controllers}
    ours = [claim for claim in claims if claim.name in known]
    live = {claim.name for claim in ours if not claim.deleting}
    refused = {
        name for name in live if (status := known[name]) and status.pci_address in controllers
    }
    return UsbClaimSet(
        held=frozenset(claim.name for claim in ours),
        enabled=frozenset(live - refused),
        controller_claimed=frozenset(refused),
    )


@attrs.frozen
class UsbClaimDecision:
    """What the agent writes on a claim of its node, and the Event it records.

    Attributes:
        node_name: ``status.nodeName``.
        pci_address: ``status.pciAddress``.
        condition: The ``Ready`` condition.
        event: An Event when the reason changed, else ``None``.
        enables: Whether the claim enables its device.
    """

    node_name: str
    pci_address: str
    condition: Condition
    event: ClaimEvent | None
    enables: bool

    def changes(self, claim: UsbClaim) -> bool:
        """Whether the claim's status must be written."""
        old = find_condition(claim.conditions, READY)
        same = old is not None and (old.status, old.reason, old.message) == (
            self.condition.status,
            self.condition.reason,
            self.condition.message,
        )
        return not same or (claim.node_name, claim.pci_address) != (
            self.node_name,
            self.pci_address,
        )


def decide_usb_claim(
    claim: UsbClaim, device: UsbStatus, *, controller_claimed: bool, now: str
) -> UsbClaimDecision:
    """The claim's status, condition and Event, given its device and its controller's claim."""
    if device.orphaned:
        reason = UsbClaimReason.DEVICE_ORPHANED
        message = device.message
    elif controller_claimed:
        reason = UsbClaimReason.CONTROLLER_CLAIMED
        message = (
            f"the USB host controller {device.pci_address} of {claim.name} is claimed for PCI "
            "passthrough (a PCIDeviceClaim names it), so its USB devices leave the node; delete "
            "that PCIDeviceClaim or this USBDeviceClaim"
        )
    else:
        reason = UsbClaimReason.ENABLED
        message = (
            f"{device.device_path} on {device.node_name} is enabled; VMs ask for it as "
            f"hostDevices deviceName {device.resource_name}"
        )
    enables = reason is not UsbClaimReason.CONTROLLER_CLAIMED
    status = ConditionStatus.TRUE if reason is UsbClaimReason.ENABLED else ConditionStatus.FALSE
    condition = Condition(READY, status, reason.value, message, now, claim.generation)
    previous = find_condition(claim.conditions, READY)
    if previous is not None and previous.status == status and previous.reason == reason.value:
        condition = attrs.evolve(condition, last_transition_time=previous.last_transition_time)
    event = None
    if previous is None or previous.reason != reason.value:
        event = ClaimEvent(reason.value, message, warning=reason is not UsbClaimReason.ENABLED)
    return UsbClaimDecision(device.node_name, device.pci_address, condition, event, enables)


# --- Admission --------------------------------------------------------------------------------


def review_usb_claim_create(
    name: str, device: UsbStatus | None, *, controller_claimed: bool
) -> Verdict:
    """Whether a USBDeviceClaim may be created: named after a USBDevice that can be enabled.

    ``device`` is the USBDevice of the same name (``None``: none); ``controller_claimed``
    whether a PCIDeviceClaim names its host controller on its node.
    """
    try:
        UsbDeviceName.parse(name)
    except InvalidUsbDeviceNameError as err:
        return Verdict.deny(str(err))
    if device is None:
        return Verdict.deny(
            f'no USBDevice "{name}": a USBDeviceClaim is named after the USBDevice it enables; '
            "pick one from `kubectl get usbdevices`"
        )
    if device.orphaned:
        return Verdict.deny(
            f'USBDevice "{name}" is orphaned ({device.message}); claim the device under its '
            "current name from `kubectl get usbdevices`"
        )
    if controller_claimed:
        return Verdict.deny(
            f'the USB host controller {device.pci_address} of USBDevice "{name}" is claimed for '
            f"PCI passthrough on node {device.node_name}; delete that PCIDeviceClaim first"
        )
    return Verdict.allow()


def review_usb_claim_delete(
    name: str, device: UsbStatus | None, vmis: Sequence[VmiFacts]
) -> Verdict:
    """Whether a USBDeviceClaim may go: not while a running VMI on its node uses the device."""
    if device is None or not device.resource_name:
        return Verdict.allow()
    for vmi in vmis:
        if (
            vmi.running
            and vmi.node_name == device.node_name
            and device.resource_name in vmi.host_devices
        ):
            return Verdict.deny(
                f'USBDeviceClaim "{name}" is in use: VirtualMachineInstance '
                f'"{vmi.namespace}/{vmi.name}" on node "{vmi.node_name}" uses its device '
                f'(hostDevices deviceName "{device.resource_name}"); stop that VM, or remove the '
                "host device from it, then delete the claim"
            )
    return Verdict.allow()


# --- The kubelet side -------------------------------------------------------------------------


@attrs.frozen
class UsbPluginDevice:
    """One enabled USB device as its resource advertises it.

    Attributes:
        id: The kubelet's id of the device (its USBDevice name).
        device_path: Its node, ``/dev/bus/usb/BBB/DDD``.
        health: Whether a VM can use it now.
        reason: Why it is unhealthy (empty when healthy).
    """

    id: str
    device_path: str
    health: Health
    reason: str = ""

    @property
    def healthy(self) -> bool:
        """Whether a VM can use the device now."""
        return self.health is Health.HEALTHY

    @property
    def bus_device(self) -> str:
        """``bus:device`` in decimal, as virt-launcher reads it (``1:2``; empty: no valid path)."""
        parsed = parse_device_path(self.device_path)
        return "" if parsed is None else f"{parsed[0]}:{parsed[1]}"


@attrs.frozen
class UsbPool:
    """The devices advertised under one USB resource (one device, in Harvester's model).

    Attributes:
        name: The resource.
        devices: Its devices, by id.
    """

    name: ResourceName
    devices: tuple[UsbPluginDevice, ...] = ()

    def find(self, device_id: str) -> UsbPluginDevice | None:
        """The device with kubelet id ``device_id``, or ``None``."""
        return next((d for d in self.devices if d.id == device_id), None)


def assess_usb(name: str, status: UsbStatus, *, node_present: bool) -> UsbPluginDevice:
    """The advertised form of an enabled device: Healthy when present and its node exists."""
    if status.orphaned:
        return UsbPluginDevice(name, status.device_path, Health.UNHEALTHY, status.message)
    if parse_device_path(status.device_path) is None:
        return UsbPluginDevice(
            name,
            status.device_path,
            Health.UNHEALTHY,
            f"devicePath {status.device_path!r} is not /dev/bus/usb/BBB/DDD",
        )
    if not node_present:
        return UsbPluginDevice(
            name,
            status.device_path,
            Health.UNHEALTHY,
            f"{status.device_path} is missing: the device was unplugged or renumbered",
        )
    return UsbPluginDevice(name, status.device_path, Health.HEALTHY)


def usb_pools(
    devices: Iterable[UsbPluginDevice], resources: Mapping[str, str]
) -> dict[ResourceName, UsbPool]:
    """One pool per resource (``resources``: device id → resourceName), devices by id."""
    members: dict[ResourceName, list[UsbPluginDevice]] = {}
    for device in devices:
        members.setdefault(ResourceName(resources[device.id]), []).append(device)
    return {
        name: UsbPool(name, tuple(sorted(found, key=lambda d: d.id)))
        for name, found in sorted(members.items())
    }


def allocate_usb(pool: UsbPool, device_ids: Sequence[str]) -> ContainerAllocation:
    """The container's env and device nodes for ``device_ids`` of ``pool``.

    Raises:
        UnknownDeviceError: an id is not a device of ``pool``.
        UnhealthyDeviceError: a device is not Healthy now.
    """
    devices = requested_devices(pool, device_ids, claim_kind="USBDeviceClaim")
    return ContainerAllocation(
        envs={usb_env_var(pool.name): ",".join(device.bus_device for device in devices)},
        device_nodes=tuple(DeviceNode(device.device_path) for device in devices),
    )


__all__ = [
    "HARVESTER_USB_FINALIZER",
    "HUB_CLASS",
    "ORPHANED",
    "READY",
    "USB_ENV_PREFIX",
    "USB_RESOURCE_PREFIX",
    "UsbClaim",
    "UsbClaimDecision",
    "UsbClaimReason",
    "UsbClaimSet",
    "UsbDevice",
    "UsbDeviceName",
    "UsbPluginDevice",
    "UsbPool",
    "UsbStatus",
    "UsbWrites",
    "allocate_usb",
    "assess_usb",
    "decide_usb_claim",
    "desired_usb_objects",
    "device_path",
    "orphaned_status",
    "parse_device_path",
    "plan_usb_writes",
    "released_finalizers",
    "review_usb_claim_create",
    "review_usb_claim_delete",
    "usb_claim_set",
    "usb_class_type",
    "usb_description",
    "usb_device_name",
    "usb_env_var",
    "usb_name_node",
    "usb_pools",
    "usb_resource_name",
    "usb_status",
    "usb_statuses",
]

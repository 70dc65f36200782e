"""Every error the domain raises, each saying what was wrong and what to do about it.

Adapters translate their own failures (``OSError`` with an errno, API and gRPC errors) into
these, chaining the original as ``__cause__``.
"""

import enum
import errno


class PciDevicesError(Exception):
    """Base of every error raised on purpose by pcidevices."""


class InvalidPciAddressError(PciDevicesError, ValueError):
    """A text that should name a PCI function (``dddd:bb:dd.f``) does not.

    Raised before the text is used for anything, so that no path is ever built from it.
    """

    _SHOWN_MAX = 64

    def __init__(self, text: str) -> None:
        """Describe ``text``, shortened if long (it may be hostile input)."""
        shown = text if len(text) <= self._SHOWN_MAX else text[: self._SHOWN_MAX - 3] + "..."
        super().__init__(
            f"invalid PCI address {shown!r}: expected dddd:bb:dd.f (for example 0000:00:1f.6) "
            "or bb:dd.f; copy the address from `pcidevices scan` or `lspci -D`"
        )
        self.text = text


class InvalidDraDeviceNameError(PciDevicesError, ValueError):
    """A DRA device name in an allocation result is not one this driver publishes."""

    def __init__(self, text: str) -> None:
        """Describe ``text``, shortened if long (it comes from the API)."""
        shown = text if len(text) <= 64 else text[:61] + "..."  # noqa: PLR2004 - display limit
        super().__init__(
            f"invalid DRA device name {shown!r}: expected pci-dddd-bb-dd-f as this driver's "
            "ResourceSlices publish (for example pci-0000-03-00-0); the allocation names a "
            "device of another driver or an old slice"
        )
        self.text = text


class InvalidSliceSizeError(PciDevicesError, ValueError):
    """A requested number of devices per ResourceSlice is outside what the API accepts."""

    def __init__(self, value: int, limit: int) -> None:
        """Describe ``value``; ``limit`` is the API's maximum."""
        super().__init__(
            f"invalid number of devices per ResourceSlice {value}: resource.k8s.io/v1 accepts "
            f"1 to {limit}; pass a value in that range (or leave the default, {limit})"
        )
        self.value = value


class InvalidDriverNameError(PciDevicesError, ValueError):
    """A text that should name a kernel driver (``e1000e``, ``vfio-pci``) does not.

    Raised before the text is used for anything: a driver name becomes a sysfs path.
    """

    def __init__(self, text: object, hint: str) -> None:
        """Describe ``text``; ``hint`` says where it came from and what to do."""
        super().__init__(
            f"invalid kernel driver name {text!r}: expected letters, digits, '_', '.' or '-' "
            f"(at most 64, as under /sys/bus/pci/drivers); {hint}"
        )
        self.text = text


class InvalidNodeNameError(PciDevicesError, ValueError):
    """A node name that Kubernetes would not accept (not an RFC 1123 DNS subdomain)."""

    def __init__(self, text: str) -> None:
        """Describe ``text``."""
        super().__init__(
            f"invalid node name {text!r}: a node name is lower-case letters, digits, '-' and "
            "'.' (RFC 1123); pass the node's name with --node or NODE_NAME"
        )
        self.text = text


class PciIdsError(PciDevicesError):
    """The ``pci.ids`` database could not be found, read or parsed."""


class UsbIdsError(PciDevicesError):
    """The ``usb.ids`` database could not be found, read or parsed."""


class InvalidUsbDeviceNameError(PciDevicesError, ValueError):
    """A USBDeviceClaim's name is not the name of a USB device (``<node>-vvvv-pppp-BBBDDD``)."""

    def __init__(self, text: str) -> None:
        """Describe ``text``, shortened if long (it comes from the API)."""
        shown = text if len(text) <= 64 else text[:61] + "..."  # noqa: PLR2004 - display limit
        super().__init__(
            f"invalid USB device name {shown!r}: expected <node>-<vendor>-<product>-<bus><device> "
            "(for example node1-0951-1666-001002); name the USBDeviceClaim after its USBDevice "
            "(`kubectl get usbdevices`)"
        )
        self.text = text


class SysfsError(PciDevicesError):
    """The sysfs tree given to an adapter is missing or is not a sysfs tree."""


class DeviceNotFoundError(PciDevicesError, LookupError):
    """No PCI device exists at the given address on this host."""

    def __init__(self, address: object) -> None:
        """Name the missing ``address``."""
        super().__init__(
            f"no PCI device at {address} on this host; list the devices with `pcidevices scan`"
        )
        self.address = address


class RefusalReason(enum.Enum):
    """Why a device may never be handed to ``vfio-pci`` as things stand."""

    PCI_BRIDGE = "PciBridge"
    """It is a PCI-to-PCI bridge: the devices behind it are claimed, never the bridge."""
    NO_IOMMU = "NoIommu"
    """It has no IOMMU group: the node has no IOMMU enabled."""
    HOST_DEPENDS_ON_DEVICE = "HostDependsOnDevice"
    """The running host uses it (default-route NIC, mounted disk, boot console)."""
    HOST_FACTS_UNREADABLE = "HostFactsUnreadable"
    """What the host depends on could not be read, so passing anything through is unsafe."""
    DENY_LISTED = "DenyListed"
    """The operator's deny list names its address or class."""
    HELD_ELSEWHERE = "HeldByResourceClaim"
    """Another path of this node holds it on ``vfio-pci`` (a DRA ResourceClaim)."""


class ClaimRefusedError(PciDevicesError):
    """A device may not be handed to ``vfio-pci``: the host depends on it, or policy forbids it.

    Attributes:
        address: The device refused.
        reason: Why, as a `RefusalReason`.
    """

    def __init__(self, address: object, reason: RefusalReason, message: str) -> None:
        """Refuse ``address`` for ``reason``; ``message`` says why and what to do."""
        super().__init__(message)
        self.address = address
        self.reason = reason


class InvalidDenyEntryError(PciDevicesError, ValueError):
    """An entry of the operator's deny list is neither a PCI address nor a hex class prefix."""

    def __init__(self, text: str) -> None:
        """Describe the bad entry ``text``."""
        super().__init__(
            f"--deny {text!r} is neither a PCI address (0000:03:00.0) nor a class prefix in "
            "hex (03, 0200, 010802); fix or remove that --deny entry"
        )
        self.text = text


class DriverWriteError(PciDevicesError, OSError):
    """The kernel refused a write to a driver-binding attribute in sysfs.

    Attributes:
        path: The attribute written.
        errno: The kernel's answer (``EBUSY``, ``ENODEV``, ``EINVAL``, ``EACCES``).
        temporary: Whether trying again later may succeed (the device was busy).
    """

    def __init__(self, path: str, error_number: int, detail: str) -> None:
        """Describe the failed write of ``path`` that returned ``error_number``."""
        super().__init__(error_number, detail)
        self.path = path

    @property
    def temporary(self) -> bool:
        """``EBUSY`` and ``EAGAIN`` pass; every other errno will answer the same next time."""
        return self.errno in {errno.EBUSY, errno.EAGAIN}

    @property
    def vanished(self) -> bool:
        """``ENODEV``/``ENOENT``/``ENXIO``: the device is no longer there."""
        return self.errno in {errno.ENODEV, errno.ENOENT, errno.ENXIO}


class ModuleLoadError(PciDevicesError):
    """A kernel module needed for passthrough (``vfio-pci``) could not be loaded."""


class ClaimStateError(PciDevicesError):
    """The file recording claims and original drivers is unreadable or not ours."""


class ClaimFailedError(PciDevicesError):
    """Moving a device to or from ``vfio-pci`` ended without reaching the wanted driver."""


class SriovWriteError(PciDevicesError, OSError):
    """The kernel refused a write of a PF's ``sriov_numvfs``.

    Attributes:
        address: The PF.
        count: The VF count written.
        errno: The kernel's answer (``EBUSY``: VFs already enabled; ``ERANGE``/``EINVAL``:
            above ``sriov_totalvfs``; ``ENOENT``: no driver bound, or not SR-IOV capable).
    """

    def __init__(self, address: object, count: int, error_number: int, detail: str) -> None:
        """Describe the refused write of ``count`` to ``address``'s ``sriov_numvfs``."""
        super().__init__(error_number, detail)
        self.address = address
        self.count = count


class DraPrepareError(PciDevicesError):
    """A ResourceClaim cannot be prepared (or unprepared) on this node; the message says why.

    The kubelet DRA plugin puts the message into the claim's ``error`` field of its answer; the
    kubelet retries and shows it in the pod's events.
    """


class ClaimNotAllocatedError(DraPrepareError):
    """The ResourceClaim the kubelet names has no ``status.allocation`` (not scheduled yet)."""

    def __init__(self, claim: str) -> None:
        """Name the claim (``namespace/name``)."""
        super().__init__(
            f"ResourceClaim {claim} has no status.allocation: the scheduler has not allocated "
            "it yet; the kubelet retries once the pod is scheduled with it"
        )


class ClaimReplacedError(DraPrepareError):
    """The ResourceClaim of that name is another object than the one the kubelet asks for."""

    def __init__(self, claim: str, asked: str, found: str | None) -> None:
        """Name the claim and both uids (``found`` is ``None`` when the claim is gone)."""
        now = f"now has uid {found}" if found else "no longer exists"
        super().__init__(
            f"ResourceClaim {claim} with uid {asked} {now}: it was deleted (and recreated); "
            "delete the pod so that it is scheduled again with the current claim"
        )


class ForeignAllocationError(DraPrepareError):
    """An allocation result of our driver names a device of another node's pool."""

    def __init__(self, claim: str, device: str, pool: str, node: str) -> None:
        """Name the device, its pool and this node."""
        super().__init__(
            f"ResourceClaim {claim} is allocated device {device} in pool {pool}, but this node "
            f"is {node}: the pod was bound to another node than its devices'; delete the pod"
        )


class DeviceHeldError(DraPrepareError):
    """A device allocated to a ResourceClaim is held by something else on this node."""

    def __init__(self, claim: str, device: str, holder: str) -> None:
        """Name the device and what holds it."""
        super().__init__(
            f"device {device} of ResourceClaim {claim} is held by {holder}; release it there "
            "(or delete that PCIDeviceClaim) and the kubelet's retry prepares it"
        )

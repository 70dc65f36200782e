"""Object names, resourceNames and descriptions: the Harvester compatibility contract."""

import pytest

from pcicore.address import PciAddress
from pcicore.device import NodeName, PciClass, PciDevice
from pcicore.errors import InvalidPciAddressError
from pcicore.naming import (
    description,
    object_name,
    object_name_as_written,
    resource_name,
    vendor_domain,
)


class TestObjectName:
    """object_name."""

    def test_brief_example(self):
        """Node titan, address 0000:00:1f.6 gives titan-0000001f6."""
        assert object_name(NodeName("titan"), PciAddress.parse("0000:00:1f.6")) == "titan-0000001f6"


class TestResourceName:
    """resource_name."""

    @pytest.mark.parametrize(
        ("vendor", "device", "device_id", "expected"),
        [
            pytest.param(
                "Intel Corporation",
                "I350 Gigabit Network Connection",
                0x1521,
                "intel.com/I350_GIGABIT_NETWORK_CONNECTION",
                id="intel-i350",
            ),
            pytest.param(
                "Advanced Micro Devices, Inc. [AMD/ATI]",
                "R481 [Radeon X850 XT AGP]",
                0x4B49,
                "amd.com/R481_RADEON_X850_XT_AGP",
                id="amd-bracketed-vendor",
            ),
            pytest.param(
                "Mellanox Technologies",
                "MT2892 Family [ConnectX-6 Dx Flash Recovery]",
                0x0212,
                "mellanox.com/MT2892_FAMILY_CONNECTX6_DX_FLASH_RECOVERY",
                id="mellanox-dash-dropped",
            ),
            pytest.param(
                "NVIDIA Corporation",
                "GA104 [RTX A4500 Embedded GPU ]",
                0x24BA,
                "nvidia.com/GA104_RTX_A4500_EMBEDDED_GPU",
                id="nvidia-trailing-underscore-stripped",
            ),
            pytest.param("Test Vendor", "!!!", 0x5678, "test.com/5678", id="empty-product"),
            pytest.param(None, None, 0x5678, "unknown.com/5678", id="unknown-vendor"),
            pytest.param("Intel Corporation", None, 0x0D57, "intel.com/0d57", id="unknown-device"),
            pytest.param(
                "Red Hat, Inc.",
                "Virtio 1.0 network device",
                0x1041,
                "red.com/VIRTIO_1_0_NETWORK_DEVICE",
                id="dot-becomes-underscore",
            ),
            pytest.param(
                "Intel Corporation",
                "  Ethernet\tController  ",
                0x1234,
                "intel.com/ETHERNET_CONTROLLER",
                id="trimmed-whitespace-runs",
            ),
        ],
    )
    def test_derivation(self, vendor, device, device_id, expected):
        """The resourceName follows the Harvester rules exactly."""
        assert resource_name(vendor, device, device_id) == expected

    def test_long_virtual_function_name_shortened_to_vf(self):
        """A name that overflows the socket path uses VF for VIRTUAL_FUNCTION when that fits."""
        device = "Ethernet Adaptive Virtual Function Series 800 Family Long Name"
        got = resource_name("Intel Corporation", device, 0x1889)
        assert got == "intel.com/ETHERNET_ADAPTIVE_VF_SERIES_800_FAMILY_LONG_NAME"

    def test_overlong_name_falls_back_to_device_id(self):
        """A name that still overflows the socket path falls back to <vendor>/<deviceId>."""
        device = "100 Series/C230 Series Chipset Family PCI Express Root Port #1"
        assert resource_name("Intel Corporation", device, 0xA110) == "intel.com/a110"

    def test_name_at_limit_is_kept(self):
        """A socket path of exactly 108 characters still fits."""
        # The path is the prefix (41), "/", "intel.com", "-", the product and ".sock".
        product = "A" * (108 - 41 - 1 - 9 - 1 - 5)
        assert resource_name("Intel Corporation", product, 1) == f"intel.com/{product}"
        assert resource_name("Intel Corporation", product + "B", 1) == "intel.com/0001"


class TestVendorDomain:
    """vendor_domain."""

    @pytest.mark.parametrize(
        ("vendor", "expected"),
        [
            pytest.param("Intel Corporation", "intel.com", id="first-word"),
            pytest.param("Advanced Micro Devices, Inc. [AMD/ATI]", "amd.com", id="bracket-cut"),
            pytest.param("Hewlett-Packard Company", "hewlettpackard.com", id="dash-dropped"),
            pytest.param("", "unknown.com", id="empty"),
            pytest.param("Acme [First] Corp [Second]", "first.com", id="first-bracket-of-two"),
        ],
    )
    def test_vendor_part(self, vendor, expected):
        """The vendor part takes the bracketed short name, else the first word."""
        assert vendor_domain(vendor) == expected


class TestDescription:
    """description."""

    DEVICE = PciDevice(
        address=PciAddress.parse("0000:00:1f.6"),
        vendor_id=0x8086,
        device_id=0x15BB,
        pci_class=PciClass(0x02, 0x00),
    )

    def test_known_names(self):
        """Known names read as lspci prints them."""
        got = description(
            "Ethernet controller",
            "Intel Corporation",
            "Ethernet Connection (7) I219-LM",
            self.DEVICE,
        )
        assert got == "Ethernet controller: Intel Corporation Ethernet Connection (7) I219-LM"

    def test_unknown_names_fall_back_to_ids(self):
        """Unknown class, vendor and device read as Class CCSS, Vendor VVVV, Device DDDD."""
        assert description(None, None, None, self.DEVICE) == ("Class 0200: Vendor 8086 Device 15bb")


class TestObjectNameAsWritten:
    """Harvester's object name of an address as a claim or an older agent wrote it."""

    @pytest.mark.parametrize(
        ("written", "expected"),
        [
            pytest.param("00:1f.6", "titan-001f6", id="short-keeps-its-shortness"),
            pytest.param("0000:00:1f.6", "titan-0000001f6", id="full-is-object-name"),
            pytest.param("0001:00:1f.6", "titan-0001001f6", id="other-domain"),
        ],
    )
    def test_name(self, written, expected):
        """Only ``:`` and ``.`` are removed from the text as written."""
        assert object_name_as_written(NodeName("titan"), written) == expected

    def test_not_an_address_is_refused(self):
        """Text that is no PCI address raises the named error, not a made-up name."""
        with pytest.raises(InvalidPciAddressError):
            object_name_as_written(NodeName("titan"), "../1f.6")

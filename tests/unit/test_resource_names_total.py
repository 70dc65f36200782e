"""resourceNames for every vendor and device name: never an error, always one the kubelet takes.

Property tests (hypothesis). ``pci.ids`` is edited by many hands and a host may carry a local
copy, so names can hold any text. The kubelet refuses to register a device plugin whose
resource name is not an extended resource name: a DNS subdomain, ``/``, then a qualified name
of at most 63 characters (``k8s.io/apimachinery`` ``IsQualifiedName``); KubeVirt then never
sees the device. So whatever the names, `resource_name` must return such a name.
"""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from pcicore.address import PciAddress
from pcicore.naming import resource_name, vendor_domain
from pcicore.resources import dedicated_resource_name

# k8s.io/apimachinery/pkg/util/validation: qualifiedNameFmt and dns1123SubdomainFmt.
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_NAME_MAX = 63
_LABEL_MAX = 63
_SUBDOMAIN_MAX = 253

names = st.one_of(st.none(), st.text(max_size=120))
# What pci.ids names look like, so that the search also explores the realistic corner.
realistic = st.from_regex(r"[A-Za-z0-9 ,.\[\]/()+#&_-]{0,90}", fullmatch=True)


def assert_kubelet_accepts(name: str) -> None:
    prefix, sep, rest = name.partition("/")
    assert sep, f"{name!r} has no vendor domain"
    assert _DNS_SUBDOMAIN.fullmatch(prefix), f"vendor domain {prefix!r} is not a DNS subdomain"
    assert len(prefix) <= _SUBDOMAIN_MAX
    assert all(len(label) <= _LABEL_MAX for label in prefix.split("."))
    assert _QUALIFIED_NAME.fullmatch(rest), f"{rest!r} is not a qualified name"
    assert len(rest) <= _NAME_MAX, f"{rest!r} is longer than {_NAME_MAX}"


class TestResourceNameIsTotal:
    """`resource_name` answers every input with a name the kubelet registers."""

    @given(names | realistic, names | realistic, st.integers(0, 0xFFFF))
    @example("Intel Corporation", "_Leading underscore", 0x1521)
    @example("Intel Corporation", " .Leading dot", 0x1521)
    @example("[]", "Device", 0x1)
    @example("!!!", "Device", 0x1)
    @example("A" * 80 + " Inc.", "Device", 0x1)
    def test_any_vendor_and_device_name_gives_a_valid_resource_name(
        self, vendor, device, device_id
    ):
        """Never raises; always ``<DNS subdomain>/<qualified name of at most 63 characters>``."""
        assert_kubelet_accepts(resource_name(vendor, device, device_id))

    @given(names | realistic)
    def test_any_vendor_name_gives_a_dns_subdomain(self, vendor):
        """The vendor part alone is a DNS subdomain ending in ``.com``."""
        domain = vendor_domain(vendor)
        assert domain.endswith(".com")
        assert _DNS_SUBDOMAIN.fullmatch(domain), domain
        assert all(len(label) <= _LABEL_MAX for label in domain.split("."))

    @given(realistic, st.integers(0, 0xFFFF))
    def test_same_names_give_the_same_resource_name(self, device, device_id):
        """A pure function of its inputs: every node derives the same name for one kind."""
        first = resource_name("Intel Corporation", device, device_id)
        assert resource_name("Intel Corporation", device, device_id) == first

    @given(
        names | realistic,
        names | realistic,
        st.integers(0, 0xFFFF),
        st.builds(
            PciAddress,
            domain=st.integers(0, 0xFFFF),
            bus=st.integers(0, 0xFF),
            device=st.integers(0, 0x1F),
            function=st.integers(0, 7),
        ),
    )
    def test_dedicated_resource_of_any_device_is_a_valid_resource_name(
        self, vendor, device, device_id, address
    ):
        """``<pool>-<address>`` (a claim that disables pooling) is cut to fit, never invalid."""
        pool = resource_name(vendor, device, device_id)
        assert_kubelet_accepts(dedicated_resource_name(pool, address))


_WHITESPACE_RUN = re.compile(r"\s+")
_NOT_RESOURCE_CHAR = re.compile(r"[^A-Za-z0-9_.]")
_SOCKET_PATH_LIMIT = 108


def reference_resource_name(vendor: str | None, device: str | None, device_id: int) -> str:
    """The resourceName rule written plainly: regular expressions, the socket path spelt out."""
    domain = vendor_domain(vendor)
    fallback = f"{domain}/{device_id:04x}"
    if device is None:
        return fallback
    text = device.strip().upper().replace("/", "_").replace(".", "_")
    text = _NOT_RESOURCE_CHAR.sub("", _WHITESPACE_RUN.sub("_", text)).strip("_.-")
    product = text or f"{device_id:04x}"

    def fits(product: str) -> bool:
        path = f"/var/lib/kubelet/device-plugins/kubevirt-/{domain}-{product}.sock"
        return len(path) <= _SOCKET_PATH_LIMIT

    if fits(product):
        return f"{domain}/{product}"
    shortened = product.replace("VIRTUAL_FUNCTION", "VF")
    if shortened != product and fits(shortened):
        return f"{domain}/{shortened}"
    return fallback


# Every kind of whitespace the product rule must fold into one "_", runs of them included.
whitespace_heavy = st.text(
    st.sampled_from(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u3000aZ9/._-é"),
    max_size=80,
)


@given(
    names | realistic,
    names | realistic | whitespace_heavy,
    st.integers(0, 0xFFFF),
)
@example("Intel Corporation", "I350 Gigabit\u00a0\u2003Network  Connection", 0x1521)
@example("Intel Corporation", "I/O Hub 1.5 Gb/s", 0x3420)  # "/" and "." each become "_"
@example("Intel Corporation", "Ethernet Virtual Function 700 Series " + "X" * 40, 0x154C)
@example("Intel Corporation", "A" * 51, 0x1)  # the longest product that fits after intel.com
@example("Intel Corporation", "A" * 52, 0x1)  # one more: the device id instead
def test_resource_name_is_the_rule_written_plainly(vendor, device, device_id):
    """The tuned derivation gives exactly the names of the rule as first written.

    Tuned: whitespace runs folded by split(), the socket path's length by arithmetic.
    """
    assert resource_name(vendor, device, device_id) == reference_resource_name(
        vendor, device, device_id
    )

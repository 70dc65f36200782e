"""The per-device RBAC verb ``claim`` is asked for only when the webhook is told to."""

from __future__ import annotations

from pcicore.admission import DeviceFacts
from pcicore.device import IommuGroup, PciClass
from pcioperator.webhook.admission import ClaimAdmission
from pcioperator.webhook.review import AdmissionRequest

NAME = "titan-000003000"
DEVICE = DeviceFacts(
    name=NAME,
    address="0000:03:00.0",
    node_name="titan",
    resource_name="intel.com/I350",
    iommu_group=IommuGroup(7),
    pci_class=PciClass(0x02, 0x00),
)


class Facts:
    """The cluster as the webhook reads it: one device, and RBAC that grants no ``claim``."""

    def __init__(self) -> None:
        self.rbac_asked = 0

    def device(self, name: str) -> DeviceFacts | None:
        return DEVICE if name == NAME else None

    def node_devices(self, _node: str) -> list[DeviceFacts]:
        return [DEVICE]

    def may_claim(self, _user: object, _name: str) -> bool:
        self.rbac_asked += 1
        return False

    def enabled_usb_behind(self, _node: str, _controller: str) -> tuple[str, ...]:
        return ()


def create() -> AdmissionRequest:
    """A UI-made claim (userName the Rancher user) sent by a user without the verb."""
    body = {
        "metadata": {"name": NAME},
        "spec": {"address": "0000:03:00.0", "nodeName": "titan", "userName": "u-rancher"},
    }
    return AdmissionRequest("u", "CREATE", NAME, {"username": "bob"}, body, None)


class TestClaimVerbOptIn:
    """Off by default: existing roles (Harvester's included) keep working."""

    def test_default_admits_without_asking_rbac(self):
        """Without the option the claim is admitted and no SubjectAccessReview is made."""
        facts = Facts()
        verdict = ClaimAdmission(facts).validate(create())  # type: ignore[arg-type]
        assert verdict.allowed, verdict.message
        assert facts.rbac_asked == 0

    def test_opted_in_refuses_without_the_verb(self):
        """With the option a user without ``claim`` on the device is refused."""
        facts = Facts()
        admission = ClaimAdmission(facts, require_claim_verb=True)  # type: ignore[arg-type]
        verdict = admission.validate(create())
        assert not verdict.allowed
        assert 'RBAC verb "claim"' in verdict.message

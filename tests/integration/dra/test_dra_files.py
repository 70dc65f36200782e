"""The DRA plugin's files on a real folder: checkpoint, CDI specs, metadata (pcihost.dra_files)."""

from __future__ import annotations

import json

import pytest

from dra_fakes import ref, result
from pcicore.address import PciAddress
from pcicore.device import IommuGroup
from pcicore.dra_prepare import (
    ClaimAllocation,
    DraCheckpoint,
    PreparedClaim,
    PreparedFunction,
    PreparePhase,
    allocated_devices,
    prepared_files,
)
from pcicore.errors import DraPrepareError
from pcicore.naming import ResourceName
from pcidevices.wiring.dra_plugin import held_by_resource_claims
from pcihost.dra_files import ClaimFiles, DraCheckpointFile
from pciplugin.dra.host import DraPluginSettings

NIC = "0000:03:00.0"


def files_of(claim_ref, tmp_path):
    (device,) = allocated_devices(claim_ref, ClaimAllocation(claim_ref, (result(NIC),)), "titan")
    function = PreparedFunction(device, ResourceName("intel.com/X"), IommuGroup(5))
    return prepared_files(
        claim_ref, None, [function], iommufd=False, metadata_root=str(tmp_path / "meta")
    )


class TestClaimFiles:
    """Specs and metadata written, found again, removed and pruned."""

    def test_write_then_remove_leaves_nothing_of_the_claim(self, tmp_path):
        """A spec readable as JSON, a metadata stream of two documents; then all gone."""
        store = ClaimFiles(tmp_path / "cdi", tmp_path / "meta")
        store.write(files_of(ref(), tmp_path))
        spec = json.loads(
            (tmp_path / "cdi" / "pci.devices.harvesterhci.io-vfio_uid-1.json").read_text()
        )
        assert spec["kind"] == "pci.devices.harvesterhci.io/vfio"
        stream = (tmp_path / "meta" / "vms_vm-nic" / "nic" / "metadata.json").read_text()
        decoder, documents, at = json.JSONDecoder(), [], 0
        while stream[at:].strip():
            document, end = decoder.raw_decode(stream, at)
            documents.append(document["apiVersion"])
            at = end + 1
        assert documents == [
            "metadata.resource.k8s.io/v1beta1",
            "metadata.resource.k8s.io/v1alpha1",
        ]
        assert store.spec_names() == [
            "pci.devices.harvesterhci.io-vfio_uid-1.json",
            "pci.devices.harvesterhci.io_metadata_uid-1_nic.json",
        ]
        store.remove(ref())
        assert store.spec_names() == []
        assert list((tmp_path / "meta").iterdir()) == []
        store.remove(ref())  # again: nothing to do

    def test_prune_keeps_the_claims_named_and_other_tools_files(self, tmp_path):
        """Files of claims not kept go; another vendor's spec in /var/run/cdi stays."""
        store = ClaimFiles(tmp_path / "cdi", tmp_path / "meta")
        store.write(files_of(ref(), tmp_path))
        store.write(files_of(ref("old", "uid-2"), tmp_path))
        (tmp_path / "cdi" / "nvidia.com-gpu.json").write_text("{}")
        store.prune([ref()])
        assert store.spec_names() == [
            "pci.devices.harvesterhci.io-vfio_uid-1.json",
            "pci.devices.harvesterhci.io_metadata_uid-1_nic.json",
        ]
        assert (tmp_path / "cdi" / "nvidia.com-gpu.json").exists()
        assert [p.name for p in (tmp_path / "meta").iterdir()] == ["vms_vm-nic"]

    def test_no_temporary_file_is_left_where_the_runtime_reads(self, tmp_path):
        """Only the specs themselves end in .json in the CDI folder."""
        store = ClaimFiles(tmp_path / "cdi", tmp_path / "meta")
        store.write(files_of(ref(), tmp_path))
        assert sorted(p.name for p in (tmp_path / "cdi").iterdir()) == store.spec_names()


class TestCheckpointFile:
    """The checkpoint survives a new process; a foreign file is refused with the fix."""

    def test_round_trip(self, tmp_path):
        """What was saved is what a new reader loads."""
        claim_ref = ref()
        devices = allocated_devices(claim_ref, ClaimAllocation(claim_ref, (result(NIC),)), "titan")
        saved = DraCheckpoint().with_claim(
            PreparedClaim(claim_ref, devices, PreparePhase.PREPARED, "nic")
        )
        DraCheckpointFile(tmp_path / "cp.json").save(saved)
        assert DraCheckpointFile(tmp_path / "cp.json").load() == saved

    def test_missing_is_empty_and_garbage_is_refused(self, tmp_path):
        """No file: empty. A file with a bad address: an error naming the file."""
        path = tmp_path / "cp.json"
        assert DraCheckpointFile(path).load() == DraCheckpoint()
        path.write_text(
            '{"version": 1, "claims": [{"ref": {"namespace": "a", "name": "b", "uid": "c"},'
            ' "devices": [{"address": "zz", "request": "r", "pool": "p", "name": "n"}],'
            ' "phase": "Prepared", "podClaimName": null}]}'
        )
        with pytest.raises(DraPrepareError, match="is not a DRA checkpoint"):
            DraCheckpointFile(path).load()


class TestHeldByResourceClaims:
    """The DRA checkpoint as the PCIDeviceClaim side reads it (wiring.held_by_resource_claims)."""

    def test_prepared_devices_are_named_with_their_claim(self, tmp_path):
        """Each device of each recorded claim, with the claim that holds it."""
        settings = DraPluginSettings(plugin_dir=tmp_path)
        claim_ref = ref()
        devices = allocated_devices(claim_ref, ClaimAllocation(claim_ref, (result(NIC),)), "titan")
        DraCheckpointFile(settings.checkpoint).save(
            DraCheckpoint().with_claim(PreparedClaim(claim_ref, devices, PreparePhase.PREPARED))
        )
        assert held_by_resource_claims(settings)() == {
            PciAddress.parse(NIC): "ResourceClaim vms/vm-nic (DRA)"
        }

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


def files_of(claim_ref, tmp_path, group=5):
    (device,) = allocated_devices(claim_ref, ClaimAllocation(claim_ref, (result(NIC),)), "titan")
    function = PreparedFunction(device, ResourceName("intel.com/X"), IommuGroup(group))
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

    def test_a_spec_that_changed_is_written_again(self, tmp_path):
        """Only identical bytes are left alone: a spec with another group node is replaced."""
        store = ClaimFiles(tmp_path / "cdi", tmp_path / "meta")
        store.write(files_of(ref(), tmp_path, group=5))
        store.write(files_of(ref(), tmp_path, group=6))
        spec = json.loads(
            (tmp_path / "cdi" / "pci.devices.harvesterhci.io-vfio_uid-1.json").read_text()
        )
        nodes = spec["devices"][0]["containerEdits"]["deviceNodes"]
        assert [n["path"] for n in nodes] == ["/dev/vfio/vfio", "/dev/vfio/6"]

    def test_a_spec_that_cannot_be_written_names_it_and_the_options(self, tmp_path):
        """The CDI folder is a file: the error names the spec, the reason and both options."""
        (tmp_path / "cdi").write_text("")
        store = ClaimFiles(tmp_path / "cdi", tmp_path / "meta")
        with pytest.raises(DraPrepareError) as raised:
            store.write(files_of(ref(), tmp_path))
        spec = tmp_path / "cdi" / "pci.devices.harvesterhci.io-vfio_uid-1.json"
        assert str(raised.value) == (
            f"cannot write {spec}: File exists; the plugin needs write access to "
            "--cdi-dir and --dra-plugin-dir"
        )

    def test_a_metadata_folder_that_cannot_be_removed_is_an_error_naming_both_folders(
        self, tmp_path
    ):
        """Unprepare must not report success while the claim's metadata is still there."""
        store = ClaimFiles(tmp_path / "cdi", tmp_path / "meta")
        (tmp_path / "meta").mkdir()
        (tmp_path / "meta" / "vms_vm-nic").write_text("not a folder")
        with pytest.raises(DraPrepareError) as raised:
            store.remove(ref())
        cdi, meta = tmp_path / "cdi", tmp_path / "meta"
        assert str(raised.value) == (
            f"cannot remove the files of ResourceClaim vms/vm-nic: {meta / 'vms_vm-nic'}: "
            f"Not a directory; check the permissions of {cdi} and {meta}"
        )

    def test_prune_goes_on_past_an_entry_it_cannot_remove(self, tmp_path):
        """A stray file in the metadata folder does not stop a restart's prune."""
        store = ClaimFiles(tmp_path / "cdi", tmp_path / "meta")
        store.write(files_of(ref(), tmp_path))
        store.write(files_of(ref("old", "uid-2"), tmp_path))
        (tmp_path / "meta" / "stray").write_text("")
        store.prune([ref()])
        assert store.spec_names() == [
            "pci.devices.harvesterhci.io-vfio_uid-1.json",
            "pci.devices.harvesterhci.io_metadata_uid-1_nic.json",
        ]
        assert not (tmp_path / "meta" / "vms_old").exists()


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

    @pytest.mark.parametrize("text", ['{"version": 2, "claims": []}', "[]"], ids=["v2", "list"])
    def test_a_file_of_another_format_is_refused_with_what_to_do(self, tmp_path, text):
        """Another version, or no object at all: named, with the way out (pcidevices release)."""
        path = tmp_path / "cp.json"
        path.write_text(text)
        with pytest.raises(DraPrepareError) as raised:
            DraCheckpointFile(path).load()
        assert str(raised.value) == (
            f"{path} is not a DRA checkpoint of pcidevices (expected a version 1 document); "
            "move it aside: devices it recorded stay on vfio-pci until returned by hand "
            "(pcidevices release)"
        )

    def test_an_unreadable_checkpoint_names_the_file_and_the_option(self, tmp_path):
        """The checkpoint's path is a folder: the reason and --dra-plugin-dir are named."""
        path = tmp_path / "cp.json"
        path.mkdir()
        with pytest.raises(DraPrepareError) as raised:
            DraCheckpointFile(path).load()
        assert str(raised.value) == (
            f"cannot read the DRA checkpoint {path}: Is a directory; check the "
            "permissions of the plugin's folder (--dra-plugin-dir)"
        )

    def test_a_checkpoint_that_cannot_be_written_names_the_fix(self, tmp_path):
        """Its folder is a file: the reason, and root or a writable --dra-plugin-dir."""
        (tmp_path / "plugin").write_text("")
        path = tmp_path / "plugin" / "cp.json"
        with pytest.raises(DraPrepareError) as raised:
            DraCheckpointFile(path).save(DraCheckpoint())
        assert str(raised.value) == (
            f"cannot write the DRA checkpoint {path}: File exists; run as root or "
            "pass a writable --dra-plugin-dir"
        )


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

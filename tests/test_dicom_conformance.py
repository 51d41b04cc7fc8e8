"""Every kind of served DICOM file passes dciodvfy (Debian's dicom3tools), and its file meta says nothing
about the software that wrote it beyond the platform's own fixed identity."""

import shutil
import subprocess

import pydicom
import pytest
from django.test import Client
from django.urls import reverse

from readerstudy.imaging import canonical
from readerstudy.studies.models import AssignedCase

from .studies import make_pool, open_study_for, readers

pytestmark = pytest.mark.django_db

# What dciodvfy may still say, and why it is right:
ALLOWED_WARNINGS = (
    # Served files are anonymous by design: no patient ID, study date, time or ID to index them by.
    "Missing attribute or value that would be needed to build DICOMDIR",
    # Laterality is unknown to the platform (nothing about the body part is served), which is when the
    # standard lets it be empty.
    "is only permitted to be empty when actually unknown",
)


def served_files(tmp_path):
    """(kind, path) of one file of every kind a reader's browser receives."""
    make_pool(real={("XR", "2d"): 1, ("CT", "3d"): 1, ("MR", "3d"): 1},
              synthetic={("XR", "2d"): 1, ("CT", "3d"): 1, ("MR", "3d"): 1}, depth=6)
    (reader,) = readers(1)
    open_study_for([reader], {("XR", "2d"): 2, ("CT", "3d"): 2, ("MR", "3d"): 2},
                   reading={"allow_back": True})
    client = Client()
    client.force_login(reader)
    out = []
    for case in AssignedCase.objects.filter(assignment__reader=reader).select_related("case__item").order_by("position"):
        item = case.case.item
        urls = [(f"{item.modality} {item.dimensionality} slice", reverse("read-slice", args=[case.token, 1]))]
        if item.dimensionality == "3d":
            urls += [(f"{item.modality} {plane}", reverse("read-reformat", args=[case.token, plane, 2]))
                     for plane in canonical.REFORMAT_PLANES]
        for kind, url in urls:
            response = client.get(url)
            assert response.status_code == 200, (kind, url)
            path = tmp_path / f"{len(out)}.dcm"
            path.write_bytes(response.content)
            out.append((kind, path))
        # Answer what it asks, so the next case opens.
        questions = client.get(reverse("read-state", args=[case.token])).json()["questions"]
        body = {"label": "real", "submit": True, "idempotency_key": f"conf-{case.pk:05d}",
                **({"confidence": 3} if questions["confidence"] else {}),
                **{q["name"]: q["options"][0]["value"] for q in questions["scales"]}}
        answered = client.post(reverse("read-answer", args=[case.token]), body, content_type="application/json")
        assert answered.status_code == 200, answered.content
    return out


def test_every_served_file_kind_passes_dciodvfy(tmp_path):
    if shutil.which("dciodvfy") is None:
        pytest.skip("!!! SKIPPED: dciodvfy not found - install Debian's dicom3tools (make test does) !!!")
    files = served_files(tmp_path)
    kinds = {kind for kind, _ in files}
    assert {"XR 2d slice", "CT 3d slice", "CT coronal", "CT sagittal", "MR 3d slice", "MR coronal"} <= kinds
    for kind, path in files:
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        lines = [line.strip() for line in (run.stdout + run.stderr).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("Error")]
        warnings = [line for line in lines if line.startswith("Warning") and not any(a in line for a in ALLOWED_WARNINGS)]
        assert not errors and not warnings, (kind, errors + warnings)


def test_the_file_meta_carries_only_the_platforms_fixed_identity(tmp_path):
    for kind, path in served_files(tmp_path):
        ds = pydicom.dcmread(path)
        meta = {e.keyword: e.value for e in ds.file_meta}
        assert set(meta) == {"FileMetaInformationGroupLength", "FileMetaInformationVersion",
                             "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID",
                             "ImplementationClassUID", "ImplementationVersionName"}, kind
        assert meta["ImplementationClassUID"] == canonical.IMPLEMENTATION_CLASS_UID
        # Fixed: not pydicom's version, so files written before and after an upgrade stay alike.
        assert meta["ImplementationVersionName"] == canonical.IMPLEMENTATION_VERSION_NAME
        assert "FrameOfReferenceUID" not in ds  # not part of the Secondary Capture IOD


def test_rerender_writes_renditions_again_and_re_audits_their_studies(tmp_path, capsys):
    """Renditions of an older writer (here: with a pydicom version name and a Frame of Reference UID, as
    before) are written again with today's tags and the same pixels; the studies' audits are current again."""
    import numpy as np
    from django.core.management import call_command

    from readerstudy.imaging.models import Rendition
    from readerstudy.imaging.pool import rendition_files
    from readerstudy.studies.leak_audit import audit_is_current
    from readerstudy.studies.models import Study

    make_pool(real={("CT", "2d"): 2}, synthetic={("CT", "2d"): 2})
    (reader,) = readers(1)
    study = open_study_for([reader], {("CT", "2d"): 4})
    before = {}
    for rendition in Rendition.objects.all():
        for path in rendition_files(rendition):
            ds = pydicom.dcmread(path)
            before[(rendition.pk, path.name)] = ds.pixel_array.copy()
            ds.file_meta.ImplementationVersionName = "PYDICOM 2.4.4"
            ds.FrameOfReferenceUID = canonical.new_uid()
            ds.save_as(path)
    study.refresh_from_db()
    assert not audit_is_current(study)
    # Served files of such old renditions are still personalised in full, Frame of Reference UID included.
    case = AssignedCase.objects.filter(assignment__reader=reader, position=1).first()
    client = Client()
    client.force_login(reader)
    old = pydicom.dcmread(__import__("io").BytesIO(client.get(reverse("read-slice", args=[case.token, 1])).content))
    assert old.FrameOfReferenceUID == canonical.derived_uid(canonical.served_file_key(case.token), "frame-of-reference")

    call_command("rerender", "--study", study.slug)
    assert "4 rendition(s) written again" in capsys.readouterr().out
    study = Study.objects.get(pk=study.pk)
    assert audit_is_current(study)
    for rendition in Rendition.objects.all():
        for path in rendition_files(rendition):
            ds = pydicom.dcmread(path)
            assert ds.file_meta.ImplementationVersionName == canonical.IMPLEMENTATION_VERSION_NAME
            assert "FrameOfReferenceUID" not in ds
            assert np.array_equal(ds.pixel_array, before[(rendition.pk, path.name)])

"""Source groups and content hashes: which pool items are not independent cases.

A *source group* names what a case was made from, so that a study never shows
two cases of one patient, a volume beside its own slices or its DRR, or two
copies of one generated sample:

- ``patient:<hash>``   DICOM PatientID (with issuer), else StudyInstanceUID (hashed);
- ``file:<sha256>``    the source file (or series) otherwise: all slices of one file share it;
- ``sample:<generator>:<seed>``  a generated sample (the same seed gives the same image);
- a DRR takes its parent volume's group.

The *content hash* is the SHA-256 of the stored codes: byte-identical items
share it whatever their groups.
"""

import hashlib

import numpy as np


def patient_group(patient_id: str, issuer: str = "", study_uid: str = "") -> str:
    """The group of a DICOM source, or "" when it names neither a patient nor a study."""
    patient_id, issuer, study_uid = (str(v or "").strip() for v in (patient_id, issuer, study_uid))
    if patient_id:
        key = f"pid\0{issuer}\0{patient_id}"
    elif study_uid:
        key = f"study\0{study_uid}"
    else:
        return ""
    return "patient:" + hashlib.sha256(key.encode()).hexdigest()[:40]


def file_group(source_sha256: str) -> str:
    return f"file:{source_sha256}"


def sample_group(generator_id: int, seed) -> str:
    return f"sample:{generator_id}:{seed}"


def default_group(provenance: dict) -> str:
    """The group implied by an item's provenance when the caller named none."""
    generator, seed = provenance.get("generator"), provenance.get("seed")
    if generator is not None and seed is not None:
        return sample_group(generator.pk, seed)
    if provenance.get("source_sha256"):
        return file_group(provenance["source_sha256"])
    return ""  # filled with the content hash: an item with no known source is its own group


def content_hash(codes: np.ndarray) -> str:
    """SHA-256 of the stored codes (shape included), identical for byte-identical items."""
    codes = np.ascontiguousarray(codes, dtype="<u2")
    h = hashlib.sha256(repr(codes.shape).encode())
    h.update(memoryview(codes).cast("B"))  # the array's own bytes, not a copy of them
    return h.hexdigest()

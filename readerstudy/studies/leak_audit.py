"""Leak audit: real and synthetic cases must not differ in anything the platform controls.

Before a study opens, every file its readers will be served is built as it will
be served (`canonical.personalised_slice`), read back and compared per stratum:

- metadata: tag set and tag values (UIDs excepted), file size, matrix, slice
  count, bit depth and value range, of the axial files and of the coronal and
  sagittal reformats; a property whose values differ between the real and the
  synthetic cases of a stratum is a leak and blocks opening;
- independence: two cases of one source group beyond the study's limit, a
  calibration case sharing a group with a case to judge, and any case shown
  upsampled block opening;
- pixels (`pixel_audit`): exact duplicates block opening; near-duplicates, and
  a feature or classifier whose AUC interval excludes 0.5, are warnings.

The result carries a fingerprint of the files it read; a study opens only with
a passed audit whose fingerprint still matches (the audit itself runs as a job).
"""

import hashlib
import io
from collections import Counter, defaultdict

import numpy as np
import pydicom
from django.utils import timezone

from readerstudy.imaging.canonical import (
    REFORMAT_PLANES, personalised_slice, reformat_slice, served_file_key, upsampling,
)
from readerstudy.imaging.models import Origin
from readerstudy.imaging.pool import find_rendition, rendition_files
from readerstudy.jobs.progress import NullProgress

from .config import stratum_key, validate_config
from .models import Study, StudyCase

# Tags whose values are random per file by design (fixed length, so sizes still match).
RANDOM_VALUED = {
    "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "MediaStorageSOPInstanceUID",
}
NOT_COMPARED_VALUES = RANDOM_VALUED | {"PixelData", "InstanceNumber"}
AUDIT_TOKEN = "leak-audit"


def file_properties(data: bytes) -> tuple[dict, np.ndarray]:
    """Every non-pixel property of one served DICOM file (as hashable values), and its pixels."""
    ds = pydicom.dcmread(io.BytesIO(data))
    elements = list(ds.file_meta) + list(ds)
    pixels = ds.pixel_array
    declared_max = (1 << int(ds.BitsStored)) - 1
    return {
        "tag set": tuple((e.keyword or str(e.tag), e.VR) for e in elements),
        "tag values": tuple(
            (e.keyword, str(e.value)) for e in elements if e.keyword not in NOT_COMPARED_VALUES
        ),
        "file size": len(data),
        "matrix": (int(ds.Rows), int(ds.Columns)),
        "bit depth": (int(ds.BitsAllocated), int(ds.BitsStored), int(ds.HighBit), int(ds.PixelRepresentation)),
        "value range": (
            str(ds.get("RescaleIntercept", 0)), str(ds.get("RescaleSlope", 1)),
            "within declared bits" if int(pixels.max(initial=0)) <= declared_max else "exceeds declared bits",
            str(pixels.dtype),
        ),
    }, pixels


def _describe(values: set) -> str:
    shown = sorted(values, key=str)[:3]
    text = ", ".join(str(v) if len(str(v)) < 80 else f"{str(v)[:77]}..." for v in shown)
    return text + (f" (+{len(values) - 3} more)" if len(values) > 3 else "")


def _audit_targets(study: Study) -> list:
    """(case, preset, rendition or None) for every case readers are served (repeats are the same files)."""
    presets = study.config.get("presets", {})
    targets = []
    for case in study.cases.select_related("item").exclude(role=StudyCase.Role.REPEAT).order_by("pk"):
        preset = presets.get(stratum_key(case.item.modality, case.item.dimensionality))
        targets.append((case, preset, find_rendition(case.item, *preset) if preset else None))
    return targets


def audit_fingerprint(study: Study, targets: list | None = None) -> str:
    """A hash of what the audit reads: cases, presets, and every served file's size and modification time."""
    h = hashlib.sha256(repr(sorted(study.config.get("presets", {}).items())).encode())
    for case, _, rendition in _audit_targets(study) if targets is None else targets:
        h.update(f"{case.pk}:{case.item_id}:{case.role}:{rendition.directory if rendition else '-'}".encode())
        for path in rendition_files(rendition) if rendition else []:
            stat = path.stat() if path.exists() else None
            h.update((f"{stat.st_size}:{stat.st_mtime_ns}" if stat else "missing").encode())
    return h.hexdigest()


def _independence_problems(study: Study, cases: list) -> list[str]:
    rules = validate_config(study.config)["sampling"]
    problems = []
    regular = Counter(c.item.source_group for c in cases if c.role == StudyCase.Role.REGULAR)
    over = {g: n for g, n in regular.items() if n > rules["max_per_group"]}
    if over:
        problems.append(f"{sum(over.values())} cases share {len(over)} source group(s) beyond the study's limit of "
                        f"{rules['max_per_group']} per group (prepare the study again)")
    shared = {c.item.source_group for c in cases if c.role == StudyCase.Role.CALIBRATION} & set(regular)
    if shared:
        problems.append(f"{len(shared)} calibration case(s) share a source group with cases to judge: "
                        "their feedback would give those cases away (prepare the study again)")
    return problems


def run_leak_audit(study: Study, save: bool = True, progress=None) -> dict:
    """Audit every served file (see the module docstring); returns {"ok", "problems", "warnings", "strata",
    "pixels", "files", "fingerprint", "at"}."""
    from . import pixel_audit  # scipy: loaded by the audit (a job), not by the pages that import this module

    progress = progress or NullProgress()
    problems, warnings = [], []
    # stratum -> origin -> property -> set of values
    seen = defaultdict(lambda: defaultdict(lambda: defaultdict(set)))
    counts = defaultdict(lambda: defaultdict(int))
    served = defaultdict(list)  # stratum -> [pixel_audit.Case]
    files = 0
    key = served_file_key(AUDIT_TOKEN)
    targets = _audit_targets(study)
    fingerprint = audit_fingerprint(study, targets)
    if not targets:
        problems.append("the study has no cases yet")
    progress.start(len(targets) + 1)
    for case, preset, rendition in targets:
        progress.check_cancelled()
        item = case.item
        stratum = stratum_key(item.modality, item.dimensionality)
        if not rendition:
            problems.append(f"{stratum}: a case has no rendition at the study's matrix yet (prepare the study again)")
            continue
        if upsampling(tuple(item.master_shape), *preset):
            problems.append(f"{stratum}: item #{item.pk} ({'x'.join(map(str, item.master_shape))}) is shown "
                            f"upsampled at {'x'.join(map(str, preset))}")
        counts[stratum][item.origin] += 1
        paths = rendition_files(rendition)
        seen[stratum][item.origin]["slices per case"].add(len(paths))
        planes = []
        for number, path in enumerate(paths, start=1):
            properties, pixels = file_properties(personalised_slice(path, key, number))
            for prop, value in properties.items():
                seen[stratum][item.origin][prop].add(value)
            planes.append(pixels)
            files += 1
        codes = np.stack(planes)
        if codes.shape[0] > 1:  # the reformats of the 3-view layout come from the same writer: check them too
            for plane in REFORMAT_PLANES:
                middle = (codes.shape[1] if plane == "coronal" else codes.shape[2]) // 2
                properties, _ = file_properties(reformat_slice(codes, item.modality, plane, middle, key))
                for prop, value in properties.items():
                    seen[stratum][item.origin][f"{plane} {prop}"].add(value)
                counts[stratum]["reformats"] += 1
        served[stratum].append(pixel_audit.summarise(pixel_audit.Case(case.pk, item.pk, item.origin, case.role, codes)))
        progress.advance(1, f"read case {case.pk}")
    strata = {}
    for stratum in sorted(seen):
        real, synthetic = seen[stratum][Origin.REAL], seen[stratum][Origin.SYNTHETIC]
        differing = []
        if real and synthetic:
            for prop in real.keys() | synthetic.keys():
                if real[prop] != synthetic[prop]:
                    differing.append(prop)
                    problems.append(
                        f"{stratum}: {prop} differs — real: {_describe(real[prop])}; "
                        f"synthetic: {_describe(synthetic[prop])}"
                    )
        strata[stratum] = {
            "real": counts[stratum][Origin.REAL], "synthetic": counts[stratum][Origin.SYNTHETIC],
            "reformats_compared": counts[stratum]["reformats"],
            "differs": sorted(differing),
            "file_sizes": sorted(real["file size"] | synthetic["file size"]),
            "matrix": sorted(real["matrix"] | synthetic["matrix"]),
        }
    problems += _independence_problems(study, [case for case, _, _ in targets])
    pixels = {}
    everything = [c for group in served.values() for c in group]
    exact, near = pixel_audit.duplicates(everything)
    problems += exact
    warnings += near
    for stratum in sorted(served):
        pixels[stratum] = pixel_audit.stratum_report(served[stratum], seed=study.seed % 2**32)
        warnings += [f"{stratum}: {w}" for w in pixels[stratum]["warnings"]]
    progress.advance(1, "pixel audit done")
    result = {"ok": not problems, "problems": problems, "warnings": warnings, "strata": strata, "pixels": pixels,
              "files": files, "fingerprint": fingerprint, "at": timezone.now().isoformat()}
    if save:
        Study.objects.filter(pk=study.pk).update(audit=result)
        study.audit = result
    return result


def audit_is_current(study: Study) -> bool:
    """A passed audit whose files have not changed since."""
    audit = study.audit or {}
    return bool(audit.get("ok")) and audit.get("fingerprint") == audit_fingerprint(study)

"""Leak audit: real and synthetic cases must not differ in anything but pixel values.

Before a study opens, every canonical file its readers will be served is read
back and compared, per stratum, on each non-pixel property a browser can see:
the tag set and tag values (UIDs excepted), file size, matrix, slice count, bit
depth and value range. A property whose values differ between the real and the
synthetic cases of a stratum is a leak, and the study is refused.
"""

from collections import defaultdict

import pydicom
from django.utils import timezone

from readerstudy.imaging.models import Origin
from readerstudy.imaging.pool import rendition_files

from .config import stratum_key
from .models import Study

# Tags whose values are random per file by design (fixed length, so sizes still match).
RANDOM_VALUED = {
    "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "MediaStorageSOPInstanceUID",
}
NOT_COMPARED_VALUES = RANDOM_VALUED | {"PixelData", "InstanceNumber"}


def file_properties(path) -> dict:
    """Every non-pixel property of one served DICOM file, as hashable values."""
    ds = pydicom.dcmread(path)
    elements = list(ds.file_meta) + list(ds)
    pixels = ds.pixel_array
    declared_max = (1 << int(ds.BitsStored)) - 1
    return {
        "tag set": tuple((e.keyword or str(e.tag), e.VR) for e in elements),
        "tag values": tuple(
            (e.keyword, str(e.value)) for e in elements if e.keyword not in NOT_COMPARED_VALUES
        ),
        "file size": path.stat().st_size,
        "matrix": (int(ds.Rows), int(ds.Columns)),
        "bit depth": (int(ds.BitsAllocated), int(ds.BitsStored), int(ds.HighBit), int(ds.PixelRepresentation)),
        "value range": (
            str(ds.get("RescaleIntercept", 0)), str(ds.get("RescaleSlope", 1)),
            "within declared bits" if int(pixels.max(initial=0)) <= declared_max else "exceeds declared bits",
            str(pixels.dtype),
        ),
    }


def _describe(values: set) -> str:
    shown = sorted(values, key=str)[:3]
    text = ", ".join(str(v) if len(str(v)) < 80 else f"{str(v)[:77]}..." for v in shown)
    return text + (f" (+{len(values) - 3} more)" if len(values) > 3 else "")


def run_leak_audit(study: Study, save: bool = True) -> dict:
    """Compare real and synthetic served files per stratum; returns {"ok", "problems", "strata", "files"}."""
    presets = study.config.get("presets", {})
    problems = []
    # stratum -> origin -> property -> set of values
    seen = defaultdict(lambda: defaultdict(lambda: defaultdict(set)))
    counts = defaultdict(lambda: defaultdict(int))
    files = 0
    cases = study.cases.select_related("item").exclude(role="repeat")
    if not cases.exists():
        problems.append("the study has no cases yet")
    for case in cases:
        item = case.item
        key = stratum_key(item.modality, item.dimensionality)
        preset = presets.get(key)
        rendition = preset and item.renditions.filter(rows=preset[0], cols=preset[1], depth=preset[2]).first()
        if not rendition:
            problems.append(f"{key}: a case has no rendition at the study's matrix yet (prepare the study again)")
            continue
        counts[key][item.origin] += 1
        paths = rendition_files(rendition)
        seen[key][item.origin]["slices per case"].add(len(paths))
        for path in paths:
            for prop, value in file_properties(path).items():
                seen[key][item.origin][prop].add(value)
            files += 1
    strata = {}
    for key in sorted(seen):
        real, synthetic = seen[key][Origin.REAL], seen[key][Origin.SYNTHETIC]
        differing = []
        if real and synthetic:
            for prop in real.keys() | synthetic.keys():
                if real[prop] != synthetic[prop]:
                    differing.append(prop)
                    problems.append(
                        f"{key}: {prop} differs — real: {_describe(real[prop])}; "
                        f"synthetic: {_describe(synthetic[prop])}"
                    )
        strata[key] = {
            "real": counts[key][Origin.REAL], "synthetic": counts[key][Origin.SYNTHETIC],
            "differs": sorted(differing),
            "file_sizes": sorted(real["file size"] | synthetic["file size"]),
            "matrix": sorted(real["matrix"] | synthetic["matrix"]),
        }
    result = {"ok": not problems, "problems": problems, "strata": strata, "files": files,
              "at": timezone.now().isoformat()}
    if save:
        Study.objects.filter(pk=study.pk).update(audit=result)
        study.audit = result
    return result

"""Everything a reader's browser receives about a case is built here, and only here.

It must not depend on whether the case is real or synthetic (except the
feedback of calibration cases, which readers are told about): no pool ids,
provenance, file names, dates or other readers' answers. tests/test_blinding.py
checks the responses of a real and a synthetic case against each other.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pydicom
from django.urls import reverse

from readerstudy.imaging.canonical import (
    REFORMAT_PLANES, personalised_slice, reformat_slice, served_file_key, slice_filename,
)
from readerstudy.imaging.pool import find_rendition, rendition_files
from readerstudy.imaging.storage import renditions_dir

from readerstudy.imaging.models import Dimensionality
from readerstudy.imaging.orientation import markers_for
from readerstudy.studies.config import is_forced_choice, stratum_key
from readerstudy.studies.models import AssignedCase, StudyCase

from .answers import PANEL_KEYS, answer_state, questions_for

# Window presets (width, centre) in the served units: HU for CT, 12-bit codes otherwise.
CT_PRESETS = [
    {"name": "Default", "width": 400, "center": 40},
    {"name": "Lung", "width": 1500, "center": -600},
    {"name": "Mediastinum", "width": 350, "center": 50},
    {"name": "Bone", "width": 2000, "center": 500},
    {"name": "Brain", "width": 80, "center": 40},
    {"name": "Percentile", "auto": [1, 99]},
]
CODE_PRESETS = [
    {"name": "Default", "width": 4096, "center": 2048},
    {"name": "Percentile", "auto": [1, 99]},
]


@dataclass(frozen=True)
class ServedCase:
    """What serving one case's files needs: its canonical series, served size and file key (no truth)."""

    files: tuple
    directory: str
    modality: str
    volume: bool
    rows: int
    cols: int
    depth: int
    key: bytes

    def slice(self, number: int) -> bytes | None:
        """Axial slice `number` (1-based) as this reader is served it, or None when there is no such slice."""
        if not 1 <= number <= self.depth:
            return None
        return personalised_slice(self.files[number - 1], self.key, number)

    def reformat(self, plane: str, number: int) -> bytes | None:
        """Coronal or sagittal image `number` (1-based) of a volume case, or None when there is none."""
        if plane not in REFORMAT_PLANES or not self.volume:
            return None
        if not 1 <= number <= (self.rows if plane == "coronal" else self.cols):
            return None
        codes = _served_codes(self.directory, self.depth)
        return reformat_slice(codes, self.modality, plane, number - 1, self.key)


def served_case(assigned_case: AssignedCase) -> ServedCase | None:
    """The served-file facts of a reader's case, or None when its rendition has not been written."""
    item = assigned_case.case.item
    presets = assigned_case.assignment.study.config["presets"]
    rows, cols, depth = presets[stratum_key(item.modality, item.dimensionality)]
    rendition = find_rendition(item, rows, cols, depth)
    if rendition is None:
        return None
    return ServedCase(tuple(rendition_files(rendition)), rendition.directory, item.modality,
                      item.dimensionality == Dimensionality.VOLUME, rows, cols, depth,
                      served_file_key(assigned_case.token))


@lru_cache(maxsize=16)
def _served_codes(directory: str, depth: int) -> np.ndarray:
    """The axial codes of a rendition (read once per process; renditions never change)."""
    return np.stack([pydicom.dcmread(renditions_dir() / directory / slice_filename(i)).pixel_array
                     for i in range(depth)])


def reformat_url(token: str, plane: str, number: int) -> str:
    return reverse("read-reformat", kwargs={"token": token, "plane": plane, "number": number})


def window_presets(modality: str) -> list[dict]:
    return CT_PRESETS if modality == "CT" else CODE_PRESETS


def slice_url(token: str, number: int) -> str:
    return reverse("read-slice", kwargs={"token": token, "number": number})


def _images(token: str, volume: bool, rows: int, cols: int, depth: int) -> dict:
    """The wadouri ids of one case's axial slices (and, for volumes, its coronal and sagittal reformats)."""
    return {
        "image_ids": ["wadouri:" + slice_url(token, n) for n in range(1, depth + 1)],
        # Coronal and sagittal reformats of volumes, for the 3-view layout.
        "reformats": {
            "coronal": ["wadouri:" + reformat_url(token, "coronal", n) for n in range(1, rows + 1)],
            "sagittal": ["wadouri:" + reformat_url(token, "sagittal", n) for n in range(1, cols + 1)],
        } if volume else None,
    }


def trial_panels(assignment_id: int, position: int) -> list[AssignedCase]:
    """The cases shown at one position of an assignment, in panel order (several for a forced-choice trial)."""
    return list(AssignedCase.objects.filter(assignment_id=assignment_id, position=position)
                .select_related("case__item").order_by("panel"))


def _next_images(assigned_case: AssignedCase, position, row: dict, config: dict) -> list[str]:
    """wadouri ids of the next position's axial slices, middle first, when the reader may fetch them."""
    if row["position"] >= position.total:
        return []
    following = position.rows[row["position"]]
    if not position.may_fetch_files(following):
        return []
    ids = []
    for member in trial_panels(assigned_case.assignment_id, following["position"]):
        item = member.case.item
        depth = config["presets"][stratum_key(item.modality, item.dimensionality)][2]
        middle = (depth - 1) // 2
        order = sorted(range(depth), key=lambda n: (abs(n - middle), n))
        ids += ["wadouri:" + slice_url(member.token, n + 1) for n in order]
    return ids


def case_payload(assigned_case: AssignedCase, position, prefetch: bool = True) -> dict:
    """The viewer's data for one case (or forced-choice trial): images, questions, own answer, navigation.

    Without `prefetch`, no images of the case after it are offered (the next case's page rendered ahead:
    those files are served only once this reader's current answer is in).
    """
    study = assigned_case.assignment.study
    config = position.config
    item = assigned_case.case.item
    key = stratum_key(item.modality, item.dimensionality)
    rows, cols, depth = config["presets"][key]
    volume = item.dimensionality == Dimensionality.VOLUME
    token = assigned_case.token
    row = position.row(token)
    previous, following = position.neighbours(row)
    read = getattr(assigned_case, "read", None)
    forced = is_forced_choice(config)
    images = _images(token, volume, rows, cols, depth)
    if forced:
        images["reformats"] = None  # trials are read side by side, axially (no 3-view layout)
    return {
        "study": {"name": study.name, "instructions": study.instructions},
        # A coordinator trying the study (studies/preview.py): the page says so and offers to end it.
        "preview": {"end": reverse("study-action", kwargs={"slug": study.slug, "action": "end-preview"})}
        if assigned_case.assignment.preview else None,
        "design": config["design"],
        "case": {
            "token": token,
            "position": assigned_case.position,
            "total": position.total,
            "done": position.done,
            "session": assigned_case.session,
            "calibration": assigned_case.case.role == StudyCase.Role.CALIBRATION,
            "modality": item.modality,
            "volume": item.dimensionality == Dimensionality.VOLUME,
            "rows": rows,
            "cols": cols,
            "slices": depth,
            **images,
            # Forced choice: every panel's images, left to right (all of one stratum, so alike in size).
            "panels": [{"letter": PANEL_KEYS[p.panel].upper(), **_images(p.token, volume, rows, cols, depth)}
                       for p in trial_panels(assigned_case.assignment_id, assigned_case.position)]
            if forced else None,
            "presets": window_presets(item.modality),
            # A/P/L/R markers per view: decided for the stratum (see imaging/orientation.py), never per case.
            "markers": markers_for(config.get("drawn", {}).get("orientation", {}).get(key)),
        },
        "questions": questions_for(config, item.dimensionality),
        "answer": answer_state(read),
        "navigation": {
            "previous": reverse("read-case", kwargs={"token": previous}) if previous else None,
            "next": reverse("read-case", kwargs={"token": following}) if following else None,
            "resume": reverse("read-study", kwargs={"slug": study.slug}),
            "cases": reverse("read-cases", kwargs={"slug": study.slug}) if config["reading"]["allow_back"] else None,
            "worklist": reverse("worklist"),
            "allow_back": config["reading"]["allow_back"],
            "blank_ms": config["reading"]["blank_ms"],
            # The next case's images, fetched into the browser's cache while the reader answers this one.
            "prefetch": _next_images(assigned_case, position, row, config) if prefetch else [],
        },
        "urls": {
            "answer": reverse("read-answer", kwargs={"token": token}),
            "state": reverse("read-state", kwargs={"token": token}),
        },
    }


def next_case_payload(assigned_case: AssignedCase, position) -> dict | None:
    """The viewer's data for the case that follows once this one is finished, for showing it in place.

    Only for the next position of the same session, whose files the reader may already fetch (so it
    opens without a page load); None at the end, before a session break, or where it may not be fetched.
    """
    row = position.row(assigned_case.token)
    if row["position"] >= position.total:
        return None
    following = position.rows[row["position"]]
    after = position.after_submitting(row)
    if not (position.may_fetch_files(following) and after.may_open(following)):
        return None
    case = (AssignedCase.objects.filter(assignment_id=assigned_case.assignment_id, position=following["position"],
                                        panel=0).select_related("case__item", "read").first())
    case.assignment = assigned_case.assignment  # with its study and reader already loaded
    # The files of the case after that one are served only once this answer is in: the viewer asks
    # for that case's page again after the server has acknowledged it, and prefetches from there.
    return case_payload(case, after, prefetch=False)

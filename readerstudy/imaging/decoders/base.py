import re
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings


# The display orientation every volume is resliced to (decoders/geometry.py): slices inferior ->
# superior, rows anterior -> posterior, columns the patient's right -> left.
RADIOLOGICAL_AXIAL = "radiological-axial"


class UnreadableImage(Exception):
    """A source that cannot become a pool item; the message is shown to the person importing."""


_DICOM_ELEMENT = re.compile(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)")
# Libraries name the file they read by its absolute path; the person importing knows which file
# it is from the outcome's label, and the server's folders are not theirs to see.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:/[^\s/'\"]+)+/([^\s/'\"]+)")


def detail_of(exc: BaseException, limit: int = 200) -> str:
    """A library's message on one line, absolute paths cut to the file's name, at most `limit` characters."""
    text = _ABSOLUTE_PATH.sub(r"\1", " ".join(str(exc).split()))
    return text[:limit] or type(exc).__name__


def reason_of(exc: BaseException) -> str:
    """A one-line reason for an exception a decoder raised, naming the DICOM element where one is named."""
    text = detail_of(exc, limit=10_000)
    if type(exc).__name__ == "BytesLengthException":  # pydicom: a value of the wrong length for its VR
        found = _DICOM_ELEMENT.search(text)
        if found:
            from pydicom.datadict import keyword_for_tag

            tag = int(found.group(1) + found.group(2), 16)
            name = keyword_for_tag(tag) or "element"
            return f"DICOM element {name} ({found.group(1)},{found.group(2)}) has a value of the wrong length"
        return "a DICOM element has a value of the wrong length"
    first = text.split(". ")[0] if text else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


@dataclass
class DecodedImage:
    """Pixel values of one source as float32 (depth, rows, cols), before any normalisation.

    `calibrated` means the values are physical units (Hounsfield units for CT);
    `inverted` means high values display dark (DICOM MONOCHROME1).
    """

    values: np.ndarray
    calibrated: bool
    inverted: bool = False
    spacing_mm: list[float] | None = None
    info: dict = field(default_factory=dict)
    source_group: str = ""  # patient or study identity where the format records one (see imaging.sources)
    # Grid the stored values lie on, in the units of `values` (1 for 8/16-bit integers,
    # the rescale slope for scaled integers, 0 for floating-point data).
    quantisation_step: float = 0.0


MIN_SIDE = 8
# Peak memory of a whole import per value, measured by bench/import_memory_bench.py (10.1-10.6 bytes on
# 2026-12-04: the decoded float32 values, to_codes' one float32 copy and the uint16 codes), with a
# margin: compared with settings.IMPORT_MEMORY_MB before any pixel is decoded.
IMPORT_BYTES_PER_VOXEL = 12


def check_dimensions(depth: int, rows: int, cols: int, samples: int = 1) -> None:
    """Refuse absurd sizes from the header alone, before any pixel is decoded."""
    if min(depth, rows, cols) < 1:
        raise UnreadableImage(f"image has no pixels (size {depth}x{rows}x{cols})")
    if min(rows, cols) < MIN_SIDE:
        raise UnreadableImage(f"image is {rows}x{cols} pixels; a reader needs at least {MIN_SIDE} on each side")
    if max(rows, cols) > settings.IMPORT_MAX_SIDE:
        raise UnreadableImage(
            f"image is {rows}x{cols} pixels; the largest side allowed is {settings.IMPORT_MAX_SIDE}"
            " (READERSTUDY_IMPORT_MAX_SIDE)"
        )
    if depth > settings.IMPORT_MAX_SLICES:
        raise UnreadableImage(
            f"image has {depth} slices; at most {settings.IMPORT_MAX_SLICES} are allowed (READERSTUDY_IMPORT_MAX_SLICES)"
        )
    voxels = depth * rows * cols * samples
    if voxels > settings.IMPORT_MAX_VOXELS:
        raise UnreadableImage(
            f"image has {voxels:,} values ({depth}x{rows}x{cols}x{samples}); at most"
            f" {settings.IMPORT_MAX_VOXELS:,} are allowed (READERSTUDY_IMPORT_MAX_VOXELS)"
        )
    needed = voxels * IMPORT_BYTES_PER_VOXEL
    if needed > settings.IMPORT_MEMORY_MB * 1024**2:
        raise UnreadableImage(
            f"image has {voxels:,} values ({depth}x{rows}x{cols}x{samples}); importing it needs about"
            f" {needed / 1024**3:.1f} GB of memory, more than the import budget of"
            f" {settings.IMPORT_MEMORY_MB / 1024:.1f} GB (READERSTUDY_IMPORT_MEMORY_MB)"
        )


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an (..., 3) RGB array."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114

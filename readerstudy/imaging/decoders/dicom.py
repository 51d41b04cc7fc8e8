"""DICOM: single files (including multi-frame), series of single-frame files, any transfer syntax.

Compressed pixel data (JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE)
decodes through pydicom's pylibjpeg plugins. Files without a meta header get
their transfer syntax from how pydicom managed to parse them.
"""

import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.filereader import read_partial
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from . import geometry
from .base import RADIOLOGICAL_AXIAL, DecodedImage, UnreadableImage, check_dimensions, luminance, reason_of
from .. import sources

# Transfer syntaxes whose pixel data may have been coded lossily (JPEG baseline/extended,
# JPEG-LS near-lossless, JPEG 2000 and HTJ2K that are not lossless-only).
LOSSY_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.203",
}

# Elements larger than this stay on disk until needed, so headers of huge files are cheap.
DEFER_SIZE = "64 KB"
PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010), little and big endian
TRUNCATED_PIXELS = "pixel data cannot be decoded: the file ends inside its pixel data (truncated or damaged)"


# Far more top-level elements than any image file has: parsing on would take a worker for hours.
MAX_ELEMENTS = 100_000
# Zero bytes read as data elements: (0000,0000) of length 0, 8 bytes each. A few end the data set
# (padding after the pixel data is kept by some writers); a 2 GB file of zeros is 250 million of them.
ZERO_ELEMENTS_ENDING = 16


class _TooManyElements(Exception):
    pass


class _ElementGuard:
    """pydicom's `stop_when`: ends the data set at zero padding, refuses implausibly many elements."""

    def __init__(self):
        self.count = self.zeros = 0

    def __call__(self, tag, vr, length) -> bool:
        self.count += 1
        if self.count > MAX_ELEMENTS:
            raise _TooManyElements
        self.zeros = self.zeros + 1 if tag == 0 and length == 0 else 0
        return self.zeros >= ZERO_ELEMENTS_ENDING


def read_header(path: Path) -> pydicom.Dataset:
    """Parse a DICOM file lazily (large values, like pixel data, are read only when used)."""
    try:
        with warnings.catch_warnings(), open(path, "rb") as fh:
            warnings.simplefilter("ignore")
            head = fh.read(132)
            # Without the "DICM" preamble, pydicom reads leading zeros as command-set elements, unguarded.
            if head[128:132] != b"DICM" and not any(head[:16]):
                raise UnreadableImage("not a readable DICOM file: it is truncated or holds no data elements")
            fh.seek(0)
            ds = read_partial(fh, stop_when=_ElementGuard(), defer_size=DEFER_SIZE, force=True)
    except UnreadableImage:
        raise
    except _TooManyElements:
        raise UnreadableImage(f"not a readable DICOM file: more than {MAX_ELEMENTS:,} data elements") from None
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
        raise UnreadableImage(f"not a readable DICOM file ({_short(exc)})") from None
    except Exception as exc:  # pydicom raises its own types for malformed elements
        raise UnreadableImage(f"not a readable DICOM file ({reason_of(exc)})") from None
    if 0 in ds and not ds.get_item(0).value:
        del ds[0]  # zero padding read as an empty (0000,0000) element, not data
    if len(ds) == 0:
        if _has_pixel_data_tag(path):  # pydicom gives up on the whole data set at a damaged pixel data element
            raise UnreadableImage(TRUNCATED_PIXELS)
        raise UnreadableImage("not a readable DICOM file: it is truncated or holds no data elements")
    _ensure_transfer_syntax(ds)
    return ds


def _ensure_transfer_syntax(ds: pydicom.Dataset) -> None:
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        return
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _short(exc: Exception) -> str:
    """The decoder's own reason in one line. pydicom's "... raised by all available plugins:" puts each
    plugin's reason on the lines after; those are what a person needs, not the heading."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return "; ".join(lines[1:3])[:200]
    return lines[0][:200]


def _frame_count(ds: pydicom.Dataset) -> int:
    try:
        return int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise UnreadableImage(f"NumberOfFrames {str(ds.get('NumberOfFrames'))!r} is not a whole number") from None


def _check_image_header(ds: pydicom.Dataset, frames: int) -> None:
    if "PixelData" not in ds:
        if _has_pixel_data_tag(getattr(ds, "filename", None)):
            raise UnreadableImage(TRUNCATED_PIXELS)
        kind = ds.get("Modality") or ds.get("SOPClassUID", "unknown")
        raise UnreadableImage(f"DICOM file has no pixel data (modality {kind}); it is not an image")
    try:
        rows, cols, samples = int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel") or 1)
    except (AttributeError, TypeError, ValueError):
        raise UnreadableImage("DICOM image header is missing Rows/Columns") from None
    check_dimensions(frames, rows, cols, samples)


def _has_pixel_data_tag(path) -> bool:
    """Whether the file holds a Pixel Data element that pydicom could not parse (it stops at a damaged one)."""
    if not isinstance(path, (str, Path)):
        return False
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    return any(tag in data for tag in PIXEL_DATA_TAGS)


def _functional(ds: pydicom.Dataset, frame: int, sequence: str, keyword: str):
    """An enhanced multi-frame attribute for one frame: its Per-frame Functional Group, else the Shared one."""
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        items = group.get(sequence)
        if items and keyword in items[0]:
            return items[0][keyword].value
    return None


def _is_enhanced(ds: pydicom.Dataset) -> bool:
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def _number(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UnreadableImage(f"{name} {str(value)!r} is not a number") from None
    if not np.isfinite(number):
        raise UnreadableImage(f"{name} {number} is not a finite number")
    return number


def _frame_rescale(ds: pydicom.Dataset, frames: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-frame (slopes, intercepts) of an enhanced multi-frame image (Pixel Value Transformation
    functional group), else None: classic images keep Rescale Slope/Intercept at the top level."""
    if not _is_enhanced(ds):
        return None
    found = [(_functional(ds, f, "PixelValueTransformationSequence", "RescaleSlope"),
              _functional(ds, f, "PixelValueTransformationSequence", "RescaleIntercept")) for f in range(frames)]
    if all(slope is None and intercept is None for slope, intercept in found):
        return None
    slopes = np.array([_number(1 if v is None else v, "RescaleSlope") for v, _ in found], dtype=np.float64)
    intercepts = np.array([_number(0 if v is None else v, "RescaleIntercept") for _, v in found], dtype=np.float64)
    return slopes, intercepts


def _check_rescale(ds: pydicom.Dataset) -> None:
    """Rescale Slope and Intercept must be numbers (pydicom would fail later with a numpy message)."""
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if keyword not in ds:
            continue
        try:
            value = float(ds[keyword].value)
        except (TypeError, ValueError):
            raise UnreadableImage(f"{keyword} {str(ds[keyword].value)!r} is not a number") from None
        except Exception as exc:
            raise UnreadableImage(f"{keyword} cannot be read ({reason_of(exc)})") from None
        if not np.isfinite(value):
            raise UnreadableImage(f"{keyword} {value} is not a finite number")


def _pixels(ds: pydicom.Dataset) -> np.ndarray:
    """Decode pixel data to float32 (frames, rows, cols): colour to luminance, modality LUT applied."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    _check_rescale(ds)
    try:
        arr = ds.pixel_array
        if photometric == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
        elif int(ds.get("SamplesPerPixel") or 1) == 1:
            rescale = _frame_rescale(ds, _frame_count(ds))
            stored = np.asarray(arr)
            if rescale is not None:  # enhanced multi-frame: pydicom's modality LUT does not look in the functional groups
                stored = stored.reshape(len(rescale[0]), *stored.shape[-2:])
            elif stored.ndim == 2:
                stored = stored[None]
            # Frame by frame into float32: the modality LUT computes in float64, one frame of it at a time.
            arr = np.empty(stored.shape, dtype=np.float32)
            for k, frame_values in enumerate(stored):
                arr[k] = (apply_modality_lut(frame_values, ds) if rescale is None
                          else frame_values.astype(np.float64) * rescale[0][k] + rescale[1][k])
    except UnreadableImage:
        raise
    except Exception as exc:  # pydicom raises many types for damaged pixel data
        raise UnreadableImage(f"pixel data cannot be decoded: {_short(exc)}") from None
    except BaseException as exc:
        # Decoders written in Rust (pyo3) panic with a BaseException subclass on some damaged streams.
        if type(exc).__name__ != "PanicException":
            raise
        raise UnreadableImage(f"pixel data cannot be decoded: the decoder failed ({_short(exc)})") from None
    arr = np.asarray(arr)
    if arr.ndim >= 3 and arr.shape[-1] in (3, 4) and (photometric != "MONOCHROME2" and photometric != "MONOCHROME1"):
        arr = luminance(arr[..., :3])
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise UnreadableImage(f"unexpected pixel array shape {arr.shape}")
    return arr


def _release_pixels(ds: pydicom.Dataset) -> None:
    """Let go of a decoded file's pixel bytes and of pydicom's cached array of them."""
    if "PixelData" in ds:
        del ds["PixelData"]
    ds._pixel_array = None


def _measure(ds: pydicom.Dataset, keyword: str):
    """A Pixel Measures attribute: top level, else (enhanced multi-frame) the first frame's functional groups."""
    value = ds.get(keyword)
    if value is None and _is_enhanced(ds):
        value = _functional(ds, 0, "PixelMeasuresSequence", keyword)
    return value


def _spacing(ds: pydicom.Dataset) -> list[float] | None:
    try:
        row_mm, col_mm = (float(v) for v in _measure(ds, "PixelSpacing"))
    except (TypeError, ValueError):
        return None
    slice_mm = _measure(ds, "SpacingBetweenSlices") or _measure(ds, "SliceThickness")
    try:
        return [float(slice_mm) if slice_mm else None, row_mm, col_mm]
    except (TypeError, ValueError):
        return [None, row_mm, col_mm]


def _info(ds: pydicom.Dataset, **extra) -> dict:
    ts = ds.file_meta.get("TransferSyntaxUID")
    lossy = str(ds.get("LossyImageCompression", "")) == "01" or str(ts) in LOSSY_TRANSFER_SYNTAXES
    info = {
        "format": "DICOM",
        "transfer_syntax": ts.name if ts else "unknown",
        "meta_header": "TransferSyntaxUID" in ds.file_meta and ds.preamble is not None,
        "dicom_modality": str(ds.get("Modality", "")),
        "sop_class": str(ds.get("SOPClassUID", "")),
        "photometric": str(ds.get("PhotometricInterpretation", "")),
        "bits_stored": int(ds.get("BitsStored") or 0),
        "lossy_compressed": lossy,
    }
    info.update(extra)
    return info


def _patient_group(ds: pydicom.Dataset) -> str:
    """Patient (else study) identity, hashed; unreadable values count as absent."""
    def text(keyword):
        try:
            return str(ds.get(keyword) or "")
        except Exception:  # a malformed element must not stop the import
            return ""
    return sources.patient_group(text("PatientID"), text("IssuerOfPatientID"), text("StudyInstanceUID"))


def _quantisation_step(ds: pydicom.Dataset) -> float:
    """Spacing of the decoded values: the rescale slope for integer grey pixels, 1 for colour, 0 for float data."""
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        return 0.0
    if int(ds.get("SamplesPerPixel") or 1) != 1 or str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        return 1.0
    try:
        rescale = _frame_rescale(ds, _frame_count(ds))
    except UnreadableImage:
        rescale = None
    if rescale is not None:
        slopes = np.unique(np.abs(rescale[0]))
        return float(slopes[0]) if len(slopes) == 1 and slopes[0] else 0.0  # frames on different grids: none
    try:
        return abs(float(ds.get("RescaleSlope", 1) or 1))
    except (TypeError, ValueError):
        return 1.0


def _is_calibrated(ds: pydicom.Dataset) -> bool:
    return str(ds.get("Modality", "")).upper() == "CT" or str(ds.get("RescaleType", "")).upper() == "HU"


def decode_file(path: Path) -> DecodedImage:
    """A single DICOM file; a multi-frame file becomes a volume (an enhanced one ordered by frame position
    and resliced like every volume, others with their frames in stored order)."""
    ds = read_header(path)
    frames = _frame_count(ds)
    _check_image_header(ds, frames)
    values = _pixels(ds)
    spacing = _spacing(ds)
    extra = {}
    if frames > 1 and _is_enhanced(ds):
        planes = [_plane(ds, frame) for frame in range(frames)]
        positions = _positions(planes)
        if positions is not None and len(set(np.round(positions, 4))) == frames:
            order = np.argsort(positions, kind="stable")
            values, planes = values[order], [planes[i] for i in order]
        values, spacing, extra = _oriented(values, planes, spacing)
    return DecodedImage(
        values=values,
        calibrated=_is_calibrated(ds),
        inverted=str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1",
        spacing_mm=spacing,
        info=_info(ds, frames=frames, **extra),
        source_group=_patient_group(ds),
        quantisation_step=_quantisation_step(ds),
    )


def _plane(ds: pydicom.Dataset, frame: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(ImageOrientationPatient, ImagePositionPatient) of a slice, or of one frame of an enhanced image."""
    if frame is None:
        orientation, position = ds.get("ImageOrientationPatient"), ds.get("ImagePositionPatient")
    else:
        orientation = _functional(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
        position = _functional(ds, frame, "PlanePositionSequence", "ImagePositionPatient")
    try:
        orientation = np.array([float(v) for v in orientation])
        position = np.array([float(v) for v in position])
    except (TypeError, ValueError):
        return None
    if orientation.shape != (6,) or position.shape != (3,) or not (
            np.isfinite(orientation).all() and np.isfinite(position).all()):
        return None
    return orientation, position


def _positions(planes) -> list[float] | None:
    """Each plane's position along the first plane's normal, if every plane has a geometry."""
    if not planes or any(p is None for p in planes):
        return None
    normal = np.cross(planes[0][0][:3], planes[0][0][3:])
    return [float(position @ normal) for _, position in planes]


def _slice_position(ds: pydicom.Dataset) -> float | None:
    """Position along the slice normal (from ImageOrientation/PositionPatient), if present."""
    positions = _positions([_plane(ds)])
    return positions[0] if positions else None


def _oriented(values: np.ndarray, planes, spacing):
    """(values, spacing, info) of a stack ordered by position: resliced to radiological axial by the rule
    every volume follows (decoders/geometry.py) where its geometry is complete and consistent, else as
    stored with its orientation unknown."""
    positions = _positions(planes)
    if positions is None or len(planes) < 2:
        return values, spacing, {}
    orientation = planes[0][0]
    steps = np.diff(positions)
    step = float(np.median(np.abs(steps)))
    as_stored = values, spacing and ([step, *spacing[1:]] if step > 1e-3 else spacing), {}
    if any(np.abs(p[0] - orientation).max() > 1e-3 for p in planes) or np.any(steps <= 1e-3):
        return as_stored  # mixed orientations, or slices not ordered by position: no one geometry
    pixel = spacing[1:] if spacing else (1.0, 1.0)
    try:
        resliced = geometry.reslice_stack(values, geometry.dicom_affine(
            orientation, planes[0][1], float(np.median(steps)), pixel))
    except UnreadableImage:
        return as_stored
    info = {"native_orientation": resliced.native_axcodes}
    if resliced.aligned:
        info["orientation"] = RADIOLOGICAL_AXIAL
    return resliced.values, resliced.spacing_mm if spacing else None, info


def _position_gaps(ordered, positions) -> str | None:
    """A warning when slices are missing: a step between neighbours well over the usual one."""
    if len(positions) < 3 or any(p is None for p in positions):
        return None
    steps = np.abs(np.diff(positions))
    usual = float(np.median(steps))
    if usual <= 0:
        return None
    wide = [i for i, step in enumerate(steps) if step > 1.5 * usual]
    if not wide:
        return None
    where = ", ".join(f"after {Path(ordered[i][0]).name}" for i in wide[:5])
    return (f"slice positions have {len(wide)} gap(s) wider than 1.5x the usual {usual:g} mm ({where}): "
            "slices may be missing")


def sort_series(headers: list[tuple[Path, pydicom.Dataset]]) -> list[tuple[Path, pydicom.Dataset]]:
    """Order a series' slices by position along the slice normal, else by InstanceNumber."""
    positions = [_slice_position(ds) for _, ds in headers]
    if all(p is not None for p in positions) and len(set(np.round(positions, 4))) == len(positions):
        return [h for _, h in sorted(zip(positions, headers), key=lambda t: t[0])]
    try:
        numbers = [int(ds.InstanceNumber) for _, ds in headers]
    except (AttributeError, TypeError, ValueError):
        raise UnreadableImage(
            "cannot order the series: slices have neither distinct ImagePositionPatient nor InstanceNumber"
        ) from None
    if len(set(numbers)) != len(numbers):
        seen: dict[int, list[str]] = {}
        for (path, _), number in zip(headers, numbers):
            seen.setdefault(number, []).append(Path(path).name)
        clashes = "; ".join(f"{', '.join(names)} (instance {number})" for number, names in sorted(seen.items())
                            if len(names) > 1)
        raise UnreadableImage("cannot order the series: these files have the same slice position and instance "
                              f"number (two copies of one image, or two series under one UID): {clashes[:400]}")
    return [h for _, h in sorted(zip(numbers, headers), key=lambda t: t[0])]


def decode_series(paths: list[Path]) -> DecodedImage:
    """Single-frame files of one series stacked into a volume, sorted by slice position."""
    headers = []
    for path in paths:
        try:
            headers.append((path, read_header(path)))
        except UnreadableImage as exc:
            raise UnreadableImage(f"{Path(path).name}: {exc}") from None
    first = headers[0][1]
    _check_image_header(first, 1)
    rows, cols = int(first.Rows), int(first.Columns)
    check_dimensions(len(headers), rows, cols)
    for path, ds in headers:
        if "PixelData" not in ds or int(ds.get("Rows", 0)) != rows or int(ds.get("Columns", 0)) != cols:
            raise UnreadableImage(
                f"{Path(path).name}: slice is {ds.get('Rows')}x{ds.get('Columns')}, the series is {rows}x{cols}"
            )
    ordered = sort_series(headers)
    # Slice by slice into one array, each file's pixel bytes let go once decoded: one copy of the pixels.
    stacked = np.empty((len(ordered), rows, cols), dtype=np.float32)
    for k, (path, ds) in enumerate(ordered):
        try:
            plane = _pixels(ds)
        except UnreadableImage as exc:
            raise UnreadableImage(f"{Path(path).name}: {exc}") from None
        if plane.shape != (1, rows, cols):
            raise UnreadableImage(f"{Path(path).name}: decodes to {plane.shape[0]} frame(s) of "
                                  f"{plane.shape[1]}x{plane.shape[2]}, the series is single frames of {rows}x{cols}")
        stacked[k] = plane[0]
        _release_pixels(ds)
    positions = [_slice_position(ds) for _, ds in ordered]
    values, spacing, extra = _oriented(stacked, [_plane(ds) for _, ds in ordered], _spacing(first))
    gaps = _position_gaps(ordered, positions)
    if gaps:
        extra["warnings"] = [gaps]
    return DecodedImage(
        values=values,
        calibrated=_is_calibrated(first),
        inverted=str(first.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1",
        spacing_mm=spacing,
        info=_info(first, frames=len(ordered), series_files=len(ordered), **extra),
        source_group=_patient_group(first),
        quantisation_step=_quantisation_step(first),
    )

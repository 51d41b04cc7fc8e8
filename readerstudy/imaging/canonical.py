"""The source-blind canonical form every pool item is served in.

Real and synthetic images meet here. Both arrive as *codes*: uint16 values in
0..4095 (12 bits stored in 16 allocated) whose meaning is fixed per modality:

- CT: code = HU + 1024, so -1024..3071 HU (RescaleIntercept -1024, slope 1);
- XR and MR: code = 4095 * normalised intensity (no physical unit).

Three rules here apply to every item whatever its origin, so that a perfect
generator's samples cannot be told from real images by what the platform does
to them: `to_codes` (one intensity rule, with dequantisation so no source bit
depth shows in the histogram), `frame` (one framing rule: whole field of view,
centre-cropped to the matrix aspect, whole depth; training data use it too) and
`render` (what is served at a study's matrix).

`write_canonical_series` is the only function that writes served DICOM. It
writes one uncompressed explicit-VR-little-endian file per slice with a fixed
tag set per modality, fresh random UIDs of fixed length, and nothing about the
source: no dates, names, institution, device, software, private tags, comments,
derivation, spacing or compression history. Files of the same modality and
matrix therefore have the same tags and the same size whatever their origin.
"""

import hashlib
import hmac
import io
import os
import secrets
import zlib
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

BITS_STORED = 12
CODE_MAX = (1 << BITS_STORED) - 1
CT_HU_OFFSET = 1024
# Our implementation class UID; identical for every file, so it says nothing about origin.
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1523.1"
# Fixed, so files written before and after a pydicom upgrade stay alike (pydicom would write its own version).
IMPLEMENTATION_VERSION_NAME = "READERSTUDY_1"


@dataclass(frozen=True)
class ModalitySpec:
    dicom_modality: str
    rescale_intercept: int
    rescale_type: str
    window_center: int
    window_width: int


MODALITY_SPECS = {
    "XR": ModalitySpec("DX", 0, "US", 2048, 4096),
    "CT": ModalitySpec("CT", -CT_HU_OFFSET, "HU", 40, 400),
    "MR": ModalitySpec("MR", 0, "US", 2048, 4096),
}


ROBUST_PERCENTILES = (0.5, 99.5)
DEQUANTISE_WIDTH = 0.998
# Sample size for the percentiles (enough for stable estimates on any volume).
_ESTIMATE_SAMPLE = 1_000_000


class BlankImage(ValueError):
    """An image with a single value everywhere: it cannot be normalised."""


def _sample(values: np.ndarray) -> np.ndarray:
    """Every k-th value in C order (as `ravel()[::k]`, without copying a non-contiguous array first)."""
    step = max(1, values.size // _ESTIMATE_SAMPLE)
    if values.flags.c_contiguous:
        return values.ravel()[::step]
    return values[np.unravel_index(np.arange(0, values.size, step), values.shape)]


def to_codes(values: np.ndarray, modality: str, *, hounsfield: bool = False, inverted: bool = False,
             step: float = 0.0, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """The one intensity rule for every pool item, whatever its origin: values to uint16 codes.

    - CT in Hounsfield units (`hounsfield`): code = HU + 1024, clipped to -1024..3071 HU.
    - Everything else (XR, MR, uncalibrated CT): the item's 0.5 and 99.5 percentiles
      map to codes 0 and 4095, clipped; `inverted` (MONOCHROME1) flips the scale.

    `step` is the grid the source's values lie on (1 for 8- or 16-bit integers,
    the rescale slope for scaled ones, 0 for continuous data such as generator
    output). Before scaling, each value is spread uniformly over its step
    (dequantisation, seeded by the content so imports are reproducible): an
    8-bit image stretched to 12 bits would otherwise use every 16th code only, a
    comb that generator output never has. Integer HU stay exact. With `shape`,
    the values are framed to (depth, rows, cols) before the final rounding, so
    resampling and quantisation happen once.
    """
    # `values` may be the caller's array and is never written to; `work` is this function's one float
    # copy, changed in place (peak memory: the input, one float32 array and the uint16 result).
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 3 or min(values.shape) < 1:
        raise ValueError(f"expected a non-empty (depth, rows, cols) array, got shape {values.shape}")
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)):  # a NaN or an infinity makes min or max one
        raise ValueError("image values must be finite")
    hounsfield = hounsfield and modality == "CT"
    if low == high:  # nothing to read, in HU or not
        raise BlankImage(f"image is blank (every pixel has the value {low:g})")
    unframed = shape is None or tuple(shape) == values.shape
    if hounsfield and step == 1 and unframed and (work := _whole_numbers(values)) is not None:
        # Whole HU on a one-HU grid, not resampled: the dequantisation noise (under half a step) would
        # be rounded away again, so the codes are the HU themselves (bit for bit what the noise gives).
        work += np.float32(CT_HU_OFFSET)
        np.clip(work, 0, CODE_MAX, out=work)
        return work.astype(np.uint16)
    if step > 0:
        seed = zlib.crc32(np.ascontiguousarray(_sample(values)).tobytes())
        work = np.random.default_rng(seed).random(values.shape, dtype=np.float32)
        # Slightly under one step wide, so float rounding never moves an integer HU to its neighbour.
        work -= 0.5
        work *= np.float32(step * DEQUANTISE_WIDTH)
        work += values
    else:
        work = values.copy()
    if hounsfield:
        work += np.float32(CT_HU_OFFSET)
    else:
        lo, hi = (float(v) for v in np.percentile(_sample(work), ROBUST_PERCENTILES))
        if not hi > lo:
            lo, hi = float(work.min()), float(work.max())
        work -= np.float32(lo)
        work *= np.float32(CODE_MAX / (hi - lo))
        if inverted:
            np.subtract(np.float32(CODE_MAX), work, out=work)
    if shape is not None and tuple(shape) != work.shape:
        work = frame(work, shape[1], shape[2], shape[0])
    np.rint(work, out=work)
    np.clip(work, 0, CODE_MAX, out=work)
    return work.astype(np.uint16)


def _whole_numbers(values: np.ndarray) -> np.ndarray | None:
    """`values` rounded (a new float32 array) where every value is a whole number already, else None.

    Compared slice by slice, so the check needs no second array of the volume's size.
    """
    rounded = np.rint(values)
    for k in range(values.shape[0]):
        if not np.array_equal(rounded[k], values[k]):
            return None
    return rounded


def codes_to_unit(codes: np.ndarray) -> np.ndarray:
    """Canonical codes to float32 in [0, 1] (what generators train on, rescaled as they like)."""
    return np.asarray(codes, dtype=np.float32) / CODE_MAX


def _filter_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Linear-interpolation weights (n_out x n_in), widened when shrinking so it also antialiases.

    Same triangle filter Pillow uses for BILINEAR; written out so that 2D images and
    volumes (including the slice axis) are resampled by one rule.
    """
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    x = np.arange(n_in) + 0.5
    w = np.clip(1.0 - np.abs(x[None, :] - centres[:, None]) / support, 0.0, None)
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(np.float32)


def center_crop_to_aspect(volume: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Crop (D, H, W) in-plane to the aspect ratio rows:cols about the centre.

    Cropping rather than padding: padding bars would mark non-square real images.
    """
    _, h, w = volume.shape
    if h * cols > w * rows:
        new_h = max(1, round(w * rows / cols))
        top = (h - new_h) // 2
        return volume[:, top : top + new_h, :]
    new_w = max(1, round(h * cols / rows))
    left = (w - new_w) // 2
    return volume[:, :, left : left + new_w]


def frame(values: np.ndarray, rows: int, cols: int, depth: int) -> np.ndarray:
    """How an item is framed at a matrix: the whole field of view, centre-cropped to the
    matrix's aspect, then resampled (separable linear, antialiased) to (depth, rows, cols).

    The one framing rule: training data (`generation.framing`), import (`to_codes`)
    and serving (`render`) all call it, so a generator learns exactly the framing
    readers see for real cases. Depth is always the whole volume resampled.
    """
    vol = center_crop_to_aspect(np.asarray(values), rows, cols).astype(np.float32, copy=False)
    d, h, w = vol.shape
    if h != rows:
        vol = np.einsum("rh,dhw->drw", _filter_matrix(h, rows), vol, optimize=True)
    if w != cols:
        vol = np.einsum("cw,drw->drc", _filter_matrix(w, cols), vol, optimize=True)
    if d != depth:
        vol = np.einsum("kd,drc->krc", _filter_matrix(d, depth), vol, optimize=True)
    return vol


def frame_codes(codes: np.ndarray, rows: int, cols: int, depth: int) -> np.ndarray:
    """`frame` for canonical codes: (D, H, W) uint16 to (depth, rows, cols) uint16."""
    codes = np.asarray(codes)
    if codes.shape == (depth, rows, cols):
        return codes.astype(np.uint16, copy=False)
    return np.clip(np.rint(frame(codes, rows, cols, depth)), 0, CODE_MAX).astype(np.uint16)


def render(master: np.ndarray, modality: str, rows: int, cols: int, depth: int) -> np.ndarray:
    """The codes readers are served for a master at (depth, rows, cols).

    Framed by `frame`; XR and MR then go through the percentile rule of
    `to_codes` again at the served matrix, so saturation and contrast do not
    depend on how far an item was downsampled (a real image reduced from 512
    pixels and a sample made at 64 both end with 0.5% of pixels at each end).
    CT keeps its Hounsfield units.
    """
    master = np.asarray(master)
    resampled = master.shape != (depth, rows, cols)
    values = frame(master, rows, cols, depth) if resampled else master.astype(np.float32)
    if modality == "CT":
        return np.clip(np.rint(values), 0, CODE_MAX).astype(np.uint16)
    try:
        # No dequantisation here: codes already carry their source's (see `to_codes`), and spreading an
        # unresampled flat background over two codes would itself mark the item (the null-generator test).
        return to_codes(values, modality)
    except BlankImage:  # a flat crop is served flat
        return np.clip(np.rint(values), 0, CODE_MAX).astype(np.uint16)


def upsampling(native: tuple[int, int, int], rows: int, cols: int, depth: int) -> bool:
    """Whether framing an item of shape `native` at (depth, rows, cols) would enlarge it on any axis."""
    d, h, w = native
    cropped = center_crop_to_aspect(np.empty((1, h, w), dtype=np.uint8), rows, cols).shape
    return rows > cropped[1] or cols > cropped[2] or (depth > 1 and depth > d)


def fit_within(shape: tuple[int, int, int], max_side: int) -> tuple[int, int, int]:
    """Shape (D, H, W) scaled so H and W are at most max_side, aspect kept (depth untouched)."""
    d, h, w = shape
    scale = min(1.0, max_side / max(h, w))
    return d, max(1, round(h * scale)), max(1, round(w * scale))


def _uid_from(number: int) -> str:
    return "2.25." + str(10**38 + number % (2**128 - 10**38))


def derived_uid(key: bytes, name: str) -> str:
    """A UID derived from a secret key and a name, 44 characters like `new_uid` (HMAC-SHA-256)."""
    return _uid_from(int.from_bytes(hmac.new(key, name.encode(), hashlib.sha256).digest()[:16], "big"))


def served_file_key(token: str) -> bytes:
    """The key a served file's UIDs derive from: one per case token, i.e. per (study, reader, position)."""
    from django.conf import settings

    return hmac.new(settings.SECRET_KEY.encode(), f"served-file:{token}".encode(), hashlib.sha256).digest()


def personalised_slice(path: Path, key: bytes, index: int) -> bytes:
    """A served slice file with Study/Series/Frame-of-reference/SOP UIDs derived from `key`.

    Renditions are shared by every study, reader and repeat; served files must
    not be, or a reader could match a case across studies, readers or repeats.
    The caller passes one key per (study, reader, case position): the same
    request gives the same bytes, and no two positions share a UID.

    Every UID the canonical writer stores is 44 characters long, and so is every
    derived one: the file is personalised by overwriting the UID values in place
    (their offsets are found once per file), with exactly the bytes
    `personalised_dataset` would write, at a fraction of the cost.
    """
    stat = os.stat(path)  # a changed file (which the leak audit must see as it is) is looked at afresh
    data = bytearray(Path(path).read_bytes())
    for offset, name in _uid_offsets(str(path), stat.st_size, stat.st_mtime_ns):
        data[offset:offset + UID_LENGTH] = derived_uid(key, name.format(index=index)).encode()
    return bytes(data)


def personalised_dataset(path: Path, key: bytes, index: int) -> bytes:
    """`personalised_slice` through pydicom (the reference the fast path is tested against)."""
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = derived_uid(key, "study")
    ds.SeriesInstanceUID = derived_uid(key, "series")
    if "FrameOfReferenceUID" in ds:  # renditions written before it was dropped (manage.py rerender)
        ds.FrameOfReferenceUID = derived_uid(key, "frame-of-reference")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = derived_uid(key, f"sop:{index}")
    return _file_bytes(ds)


UID_LENGTH = 44
_PERSONAL_UIDS = {"StudyInstanceUID": "study", "SeriesInstanceUID": "series",
                  "FrameOfReferenceUID": "frame-of-reference", "SOPInstanceUID": "sop:{index}"}


@lru_cache(maxsize=200_000)
def _uid_offsets(path: str, size: int, mtime_ns: int) -> tuple:
    """(byte offset, derived-UID name) of each personal UID value in a canonical file of this size and mtime."""
    ds = pydicom.dcmread(path)
    data = Path(path).read_bytes()
    found = []
    personal = {k: v for k, v in _PERSONAL_UIDS.items() if k in ds}  # older renditions also hold a FoR UID
    if len(personal) < len(_PERSONAL_UIDS) - 1:
        raise ValueError(f"{path}: not a canonical file (personal UIDs missing)")
    for keyword, name in personal.items():
        value = str(ds[keyword].value).encode()
        if len(value) != UID_LENGTH:
            raise ValueError(f"{path}: {keyword} is not a canonical {UID_LENGTH}-character UID")
        start = 0
        while (offset := data.find(value, start)) >= 0:  # SOP Instance UID is also in the file meta
            found.append((offset, name))
            start = offset + UID_LENGTH
    if len(found) != len(personal) + 1:
        raise ValueError(f"{path}: expected {len(personal) + 1} personal UID values, found {len(found)}")
    return tuple(found)


def _file_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


REFORMAT_PLANES = ("coronal", "sagittal")


def reformat_plane(codes: np.ndarray, plane: str, index: int) -> np.ndarray:
    """One coronal or sagittal image of an axial (depth, rows, cols) stack, superior at the top."""
    if plane == "coronal":
        return np.ascontiguousarray(codes[::-1, index, :])
    if plane == "sagittal":
        return np.ascontiguousarray(codes[::-1, :, index])
    raise ValueError(f"unknown plane {plane!r}")


def reformat_slice(codes: np.ndarray, modality: str, plane: str, index: int, key: bytes) -> bytes:
    """A coronal/sagittal reformat as a served file: the canonical writer, UIDs derived from `key`.

    Reformats come from the same served codes and the same writer as the axial
    slices, so what is true of those (tags, sizes, no provenance) is true here;
    each plane is its own series of the case's study.
    """
    image = reformat_plane(codes, plane, index)
    aspect = codes.shape[2 if plane == "coronal" else 1] / codes.shape[0]  # shown as tall as it is wide
    ds = build_slice_dataset(
        image, modality, index, derived_uid(key, "study"), derived_uid(key, f"series:{plane}"), pixel_aspect=aspect,
    )
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = derived_uid(key, f"sop:{plane}:{index + 1}")
    return _file_bytes(ds)


def new_uid() -> str:
    """A random UUID-derived UID (2.25 root) that is always 44 characters long.

    Fixed length keeps file sizes identical across items: a variable-length UID
    would make sizes differ at random, and the pre-opening leak audit compares sizes.
    """
    return _uid_from(secrets.randbelow(2**128 - 10**38))


def build_slice_dataset(
    plane: np.ndarray, modality: str, index: int, study_uid: str, series_uid: str, pixel_aspect: float | None = None,
) -> Dataset:
    """The canonical dataset for one slice; the tag set depends on nothing but the modality (and, for
    reformats, `pixel_aspect`: how much taller than wide a pixel is displayed)."""
    spec = MODALITY_SPECS[modality]
    if plane.dtype != np.uint16 or plane.ndim != 2:
        raise ValueError(f"canonical slices are 2D uint16 code arrays, got {plane.dtype} {plane.shape}")
    if int(plane.max(initial=0)) > CODE_MAX:
        raise ValueError(f"codes must be at most {CODE_MAX}")
    sop_uid = new_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.Modality = spec.dicom_modality
    ds.ConversionType = "WSD"
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    # General Study and Series: the Type 2 attributes are present and empty (nothing about the source).
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.AccessionNumber = ""
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Laterality = ""
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = plane.shape
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = spec.rescale_intercept
    ds.RescaleSlope = 1
    ds.RescaleType = spec.rescale_type
    ds.WindowCenter = spec.window_center
    ds.WindowWidth = spec.window_width
    if pixel_aspect is not None:
        # A display aspect only (no physical size is known or served): the same for every case of a stratum.
        ds.PixelSpacing = [f"{pixel_aspect:.6f}", "1"]
    ds.PixelData = np.ascontiguousarray(plane, dtype="<u2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def write_canonical_series(codes: np.ndarray, modality: str, directory: Path) -> list[int]:
    """Write (D, H, W) uint16 codes as canonical DICOM files 0001.dcm... in `directory`.

    The directory must not exist; files are written to a temporary sibling and
    moved into place at once, so a failure leaves no partial series. Returns the
    byte size of each file.
    """
    if modality not in MODALITY_SPECS:
        raise ValueError(f"unknown modality {modality!r}")
    codes = np.asarray(codes)
    if codes.ndim != 3:
        raise ValueError(f"expected a (depth, rows, cols) array, got shape {codes.shape}")
    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=directory.parent))
    try:
        study_uid, series_uid = new_uid(), new_uid()
        sizes = []
        for index, plane in enumerate(codes):
            ds = build_slice_dataset(plane, modality, index, study_uid, series_uid)
            path = tmp / slice_filename(index)
            ds.save_as(path, enforce_file_format=True)
            sizes.append(path.stat().st_size)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sizes


def slice_filename(index: int) -> str:
    return f"{index + 1:04d}.dcm"

import gzip
import zlib
from pathlib import Path

from .base import UnreadableImage

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
NIFTI_HEADER_SIZES = (348, 540)


class Format:
    DICOM = "dicom"
    DICOM_SERIES = "dicom-series"
    NIFTI = "nifti"
    RASTER = "raster"


def _is_nifti_header(head: bytes) -> bool:
    return len(head) >= 4 and (
        int.from_bytes(head[:4], "little") in NIFTI_HEADER_SIZES or int.from_bytes(head[:4], "big") in NIFTI_HEADER_SIZES
    )


def sniff(path: Path) -> str:
    """Return the Format of a file from its content; raise UnreadableImage if it is none of ours."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise UnreadableImage(f"cannot read file: {exc.strerror}") from None
    if not head:
        raise UnreadableImage("file is empty (0 bytes)")
    if head[128:132] == b"DICM":
        return Format.DICOM
    if head.startswith(PNG_MAGIC) or head.startswith(JPEG_MAGIC) or head[:4] in TIFF_MAGICS:
        return Format.RASTER
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as fh:
                inner = fh.read(4)
        except (OSError, EOFError, zlib.error):
            raise UnreadableImage("gzip file is corrupt or truncated") from None
        if _is_nifti_header(inner):
            return Format.NIFTI
        raise UnreadableImage("gzip-compressed file that is not NIfTI (.nii.gz)")
    if _is_nifti_header(head):
        return Format.NIFTI
    if _looks_like_dicom_without_preamble(path):
        return Format.DICOM
    raise UnreadableImage("not a supported image file (expected DICOM, NIfTI, PNG, JPEG or TIFF)")


def _looks_like_dicom_without_preamble(path: Path) -> bool:
    """DICOM written without the 128-byte preamble and meta header (old ACR-NEMA style files)."""
    from .dicom import read_header

    try:
        ds = read_header(path)
    except UnreadableImage:
        return False
    return "Rows" in ds and "Columns" in ds and ("PixelData" in ds or "FloatPixelData" in ds)

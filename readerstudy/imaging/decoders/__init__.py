"""Decoders turn one source (a file or a DICOM series) into a `DecodedImage`.

`sniff` recognises formats by content, not by file name; `decode_source` picks
the decoder. Every failure a person can cause (corrupt, truncated, empty,
unsupported or oversized input) surfaces as `UnreadableImage` with a message
written for that person.
"""

from .base import DecodedImage, UnreadableImage, check_dimensions
from .formats import Format, sniff

__all__ = ["DecodedImage", "Format", "UnreadableImage", "check_dimensions", "decode_source", "sniff"]


def decode_source(fmt: str, paths: list) -> DecodedImage:
    """Decode one source of the given format (a list of one file, or of a series' files)."""
    from . import dicom, nifti, raster

    if fmt == Format.DICOM:
        return dicom.decode_file(paths[0])
    if fmt == Format.DICOM_SERIES:
        return dicom.decode_series(paths)
    if fmt == Format.NIFTI:
        return nifti.decode_file(paths[0])
    if fmt == Format.RASTER:
        return raster.decode_file(paths[0])
    raise UnreadableImage(f"unsupported format {fmt!r}")

"""PNG, JPEG and TIFF (multi-page TIFF becomes a volume). Colour becomes luminance."""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from .base import DecodedImage, UnreadableImage, check_dimensions, detail_of

HIGH_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


def decode_file(path: Path) -> DecodedImage:
    try:
        with warnings.catch_warnings():
            # Size is checked below from the header; Pillow's own bomb check would
            # otherwise raise a less helpful error first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                return _decode(path)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except UnreadableImage:
        raise
    except UnidentifiedImageError:
        raise UnreadableImage("not a readable PNG, JPEG or TIFF file") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UnreadableImage(f"image data is truncated or corrupt ({detail_of(exc)})") from None


def _decode(path: Path) -> DecodedImage:
    with Image.open(path) as im:
        fmt = im.format
        cols, rows = im.size
        frames = getattr(im, "n_frames", 1)
        check_dimensions(frames, rows, cols, len(im.getbands()))
        planes, modes = [], set()
        for frame in ImageSequence.Iterator(im):
            frame = ImageOps.exif_transpose(frame) if fmt == "JPEG" else frame
            modes.add(frame.mode)
            if frame.mode not in HIGH_BIT_MODES and frame.mode != "L":
                frame = frame.convert("L")
            planes.append(np.asarray(frame, dtype=np.float32))
    if len({p.shape for p in planes}) != 1:
        raise UnreadableImage("multi-page TIFF pages differ in size; cannot stack them into a volume")
    return DecodedImage(
        values=np.stack(planes),
        calibrated=False,
        quantisation_step=0.0 if modes <= {"F"} else 1.0,
        info={"format": fmt, "modes": sorted(modes), "pages": len(planes), "lossy_compressed": fmt == "JPEG"},
    )

"""Photos for follow-up visits (R-OUT-3): JPEG or PNG by content, at most 10 MB, stored without metadata.

The type is decided by decoding the picture, never by the file name or the declared
content type. What is stored is a re-encoding of the pixels alone: EXIF (camera,
time, GPS location), XMP, IPTC, comments and PNG text chunks are all left behind.
EXIF orientation is applied to the pixels first, so the picture still stands the right
way up once the tag that said how to turn it is gone.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from labtrack.domain.errors import PayloadTooLarge, ValidationFailed

MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 60_000_000  # a 10 MB file that decodes to more is a decompression bomb, not a photo
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}
JPEG_QUALITY = 92


@dataclass(frozen=True)
class CleanPhoto:
    content: bytes
    content_type: str
    sha256: str
    width: int
    height: int


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed({"file": [message]})


def clean(data: bytes) -> CleanPhoto:
    """Check the upload and return the stored form: the pixels re-encoded, without metadata."""
    if len(data) > MAX_BYTES:
        raise PayloadTooLarge(f"The photo is {len(data) / 1e6:.1f} MB; at most 10 MB is accepted.")
    if not data:
        raise _refuse("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                kind = probe.format
                if kind not in FORMATS:
                    raise _refuse(f"must be a JPEG or PNG picture, not {kind or 'an unknown format'}")
                if probe.width * probe.height > MAX_PIXELS:
                    raise _refuse("the picture has too many pixels to be a photo")
                probe.verify()  # a truncated or corrupt file is refused here
            with Image.open(io.BytesIO(data)) as picture:
                picture.load()
                upright = ImageOps.exif_transpose(picture)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _refuse("must be a JPEG or PNG picture") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise _refuse(f"the picture cannot be read ({error})") from None
    return _encode(upright, kind)


def _encode(picture: Image.Image, kind: str) -> CleanPhoto:
    # A new image holding only the pixels: nothing of the original's info dictionary survives.
    mode = picture.mode
    if kind == "JPEG" and mode not in ("L", "RGB", "CMYK"):
        mode = "RGB"
    if kind == "PNG" and mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        mode = "RGBA"
    pixels = picture.convert(mode) if mode != picture.mode else picture
    bare = Image.new(pixels.mode, pixels.size)
    bare.frombytes(pixels.tobytes())
    if pixels.mode == "P":
        bare.putpalette(pixels.getpalette() or [])
    out = io.BytesIO()
    if kind == "JPEG":
        bare.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        bare.save(out, "PNG", optimize=True)
    content = out.getvalue()
    return CleanPhoto(content, FORMATS[kind], hashlib.sha256(content).hexdigest(), bare.width, bare.height)

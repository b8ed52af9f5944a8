"""Photo intake: check an upload, read where and when it was taken, then make a clean copy.

Two steps, both pure and synchronous:

- ``check_photo`` is what the request does. It never decodes pixels: size limits, the format
  from the magic bytes, the header (dimensions, so decompression bombs are refused), a cheap
  structural check that catches most truncated or damaged files (a JPEG must reach its end
  marker, a PNG its IEND chunk with every chunk's CRC right, a WebP must hold all the bytes its
  RIFF header announces), and EXIF GPS, capture time and orientation. It takes about a
  millisecond for a 12 MP JPEG.
- ``process_photo`` repeats those checks, then decodes, turns upright, strips and resizes. This
  is the CPU-bound part (about 80 ms for a 12 MP JPEG); it runs off the request path
  (``app.media.tasks``), in threads, since Pillow releases the GIL while it decodes, resizes
  and encodes.

Every stored file is a newly encoded JPEG, so nothing from the upload survives: no EXIF, XMP,
ICC profile, PNG text chunk or WebP metadata chunk. Alpha is flattened onto white. The ICC
profile is dropped, not converted (converting costs about 45 ms per photo, about a third of the
time budget), so Display-P3 photos come out slightly less saturated.
"""

from __future__ import annotations

import hashlib
import io
import math
import numbers
import struct
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from PIL import ExifTags, Image, PngImagePlugin

# Pillow's own limits, set here rather than left to its defaults: text and ICC chunks are
# inflated while a PNG is opened, so a few kilobytes of zTXt could otherwise ask for megabytes
# (a decompression bomb that no pixel count reveals). We keep none of that text anyway.
PngImagePlugin.MAX_TEXT_CHUNK = 256 * 1024  # one chunk, inflated
PngImagePlugin.MAX_TEXT_MEMORY = 1024 * 1024  # all of a file's text chunks
# Pillow's pixel limit (Image.MAX_IMAGE_PIXELS, about 89 MP: a warning, an error at twice
# that) stays as it is: ours (KERBSIDE_MAX_PHOTO_PIXELS) is read from the header and checked
# first, and is lower, so Pillow's is a second fence for callers that raise ours.

ACCEPTED_FORMATS = ("jpeg", "png", "webp")
STORED_CONTENT_TYPE = "image/jpeg"
MIN_EDGE = 16
JPEG_QUALITY = 85
# A JPEG's long edge can come out as much as 10% under max_edge when that lets libjpeg decode
# it at 1/2, 1/4 or 1/8 scale and skip the resize. For example, a 4032 px phone photo is
# stored at 2016 px instead of 2048 px, which takes a third of the time and a quarter of the
# memory.
DRAFT_SLACK = 0.9

# What Pillow may raise while parsing or decoding a damaged file.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    struct.error,
)
# Pillow reports a damaged EXIF block with a UserWarning and carries on without it. Where
# warnings are errors (as in tests) the warning is raised instead, and then it must lose us the
# metadata (or, if raised while opening, reject the file as corrupt) rather than cause a crash.
_METADATA_ERRORS = (*_DECODE_ERRORS, UserWarning)

_TAG_ORIENTATION = 0x0112
_TAG_DATETIME_ORIGINAL = 0x9003
_TAG_OFFSET_TIME_ORIGINAL = 0x9011
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_GPS_ALT_REF, _GPS_ALT, _GPS_STATUS, _GPS_H_ERROR = 5, 6, 9, 31

# Orientations that turn the picture by 90 degrees, so its width and height swap.
_SWAPS_AXES = frozenset({5, 6, 7, 8})
# EXIF orientation -> the transpose that makes the picture upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Recognised only to tell the reporter that the file is an image in a format we don't take.
_OTHER_SIGNATURES = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\xff\x0a", "JPEG XL"),
)
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_HEIF_BRANDS = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"hevc": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}


class PhotoRejected(Exception):
    """An upload we will not store. ``code`` is stable and ``reason`` is for the person."""

    code: ClassVar[str] = "photo_rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotAnImage(PhotoRejected):
    code = "not_an_image"


class UnsupportedFormat(PhotoRejected):
    code = "unsupported_format"


class CorruptImage(PhotoRejected):
    code = "corrupt_image"


class PhotoTooLarge(PhotoRejected):
    code = "too_large_bytes"


class TooManyPixels(PhotoRejected):
    code = "too_many_pixels"


class PhotoTooSmall(PhotoRejected):
    code = "too_small"


class HiddenContent(PhotoRejected):
    """A polyglot: an image that is also something else (an archive, a page, a script, a
    program) to whatever reads it from another end or as another type."""

    code = "hidden_content"


class DecompressionBomb(PhotoRejected):
    code = "decompression_bomb"


@dataclass(frozen=True, slots=True)
class GpsFix:
    """A location from the camera, in WGS 84 degrees. Accuracy and altitude are in metres."""

    lat: float
    lon: float
    accuracy_m: float | None = None
    altitude_m: float | None = None


@dataclass(frozen=True, slots=True)
class CheckedPhoto:
    """What ``check_photo`` read from an upload without decoding its pixels."""

    original_format: str  # one of ACCEPTED_FORMATS
    width: int  # the size ``process_photo`` will store: upright, long edge capped
    height: int
    gps: GpsFix | None
    taken_at: datetime | None  # UTC, and only if the camera recorded its UTC offset


@dataclass(frozen=True, slots=True)
class ProcessedPhoto:
    """The files to store for one upload, and what was read from it before it was stripped."""

    image: bytes = field(repr=False)
    thumbnail: bytes = field(repr=False)
    content_type: str
    width: int
    height: int
    thumb_width: int
    thumb_height: int
    sha256: str  # hex digest of ``image``
    gps: GpsFix | None
    taken_at: datetime | None  # UTC, and only if the camera recorded its UTC offset
    original_format: str  # one of ACCEPTED_FORMATS


def check_photo(
    data: bytes,
    *,
    max_edge: int = 2048,
    max_pixels: int = 40_000_000,
    max_bytes: int = 15 * 1024 * 1024,
) -> CheckedPhoto:
    """Check an upload without decoding it, and read its GPS fix, capture time and final size.

    Raises the same ``PhotoRejected`` subclasses as ``process_photo`` for everything that can
    be seen without decoding. A file that passes can still fail to decode (``CorruptImage``
    from ``process_photo``), but only if its damage is inside the compressed pixel data.
    """
    fmt = _check_upload(data, max_bytes)
    if fmt == "webp":
        # Pillow would allocate the whole canvas just to open it, so read the header ourselves.
        decoded = _webp_size(data, max_pixels)
        exif = _exif(None, _check_structure(data, fmt))
        target = _fit(decoded, max_edge)
    else:
        with _open(data, fmt) as img:
            _check_dimensions(img.size, max_pixels)
            exif = _exif(img, _check_structure(data, fmt))
            target = _fit(img.size, max_edge)
            if fmt == "jpeg":
                _draft(img, target)  # only sets the decoding scale; nothing is decoded
            decoded = img.size
    width, height = _stored_size(decoded, target, _orientation(exif))
    return CheckedPhoto(
        original_format=fmt,
        width=width,
        height=height,
        gps=exif_gps(exif),
        taken_at=exif_taken_at(exif),
    )


def process_photo(
    data: bytes,
    *,
    max_edge: int = 2048,
    thumb_edge: int = 400,
    max_pixels: int = 40_000_000,
    max_bytes: int = 15 * 1024 * 1024,
) -> ProcessedPhoto:
    """Check an uploaded photo, read its GPS fix and capture time, and make the files to store.

    Accepts JPEG (MPO too), PNG and WebP. Only the first frame of an animation is used. The
    photo is turned upright using its EXIF orientation. Its long edge is brought down to at
    most ``max_edge`` (see ``DRAFT_SLACK``; photos are never enlarged), a thumbnail is made
    with a long edge of at most ``thumb_edge``, and both are written as JPEG with no metadata.
    The stored size is always the one ``check_photo`` announced.

    Raises a ``PhotoRejected`` subclass. The size in bytes is checked before parsing, and the
    pixel count is read from the header and checked before anything is decoded.
    """
    fmt = _check_upload(data, max_bytes)
    if fmt == "webp":
        # Pillow allocates the whole WebP canvas as it opens the file, so check its size first.
        _webp_size(data, max_pixels)
    with _open(data, fmt) as img:
        _check_dimensions(img.size, max_pixels)
        exif = _exif(img, _check_structure(data, fmt))
        orientation = _orientation(exif)
        target = _fit(img.size, max_edge)
        if fmt == "jpeg":
            _draft(img, target)
        planned = _stored_size(img.size, target, orientation)
        try:
            img.load()
        except _DECODE_ERRORS as exc:
            raise CorruptImage("The image data is damaged or incomplete.") from exc
        full = _upright_rgb(img, target, orientation)
    if full.size != planned:  # never expected; the size was promised when the upload was taken
        full = _shrink(full, planned)

    # A thumbnail is small enough for a coarser box reduction to go unseen, and it halves the cost.
    thumb = _shrink(full, _fit(full.size, thumb_edge), reducing_gap=1.5)
    image = _encode(full)
    return ProcessedPhoto(
        image=image,
        thumbnail=_encode(thumb),
        content_type=STORED_CONTENT_TYPE,
        width=full.width,
        height=full.height,
        thumb_width=thumb.width,
        thumb_height=thumb.height,
        sha256=hashlib.sha256(image).hexdigest(),
        gps=exif_gps(exif),
        taken_at=exif_taken_at(exif),
        original_format=fmt,
    )


def sniff_format(data: bytes) -> str:
    """The accepted format of ``data`` based on its magic bytes (one of ``ACCEPTED_FORMATS``).

    Only the three accepted formats get as far as Pillow, which keeps its less-used parsers out
    of reach of uploads. Raises ``UnsupportedFormat`` for other image formats that we recognise
    and ``NotAnImage`` for anything else.
    """
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    other = _other_image_format(data)
    if other is not None:
        accepted = ", ".join(f.upper() for f in ACCEPTED_FORMATS)
        raise UnsupportedFormat(f"{other} images are not accepted; send {accepted}.")
    raise NotAnImage("The file is not an image.")


def exif_gps(exif: Image.Exif) -> GpsFix | None:
    """The GPS fix in ``exif``, or None if it is missing, void or not believable.

    Latitude and longitude may be given as degrees/minutes/seconds or as decimal degrees, and
    the N/S and E/W references give the sign. A fix is ignored if it has no reference (its
    hemisphere is unknown), is out of range, is not a number, or is exactly 0,0. That last
    value is what a camera writes when it had no fix.
    """
    try:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except _METADATA_ERRORS:
        return None
    if not gps or _text(gps.get(_GPS_STATUS)) == "V":  # V: measurement void
        return None
    lat = _degrees(gps.get(_GPS_LAT), _text(gps.get(_GPS_LAT_REF)), "N", "S")
    lon = _degrees(gps.get(_GPS_LON), _text(gps.get(_GPS_LON_REF)), "E", "W")
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180 or lat == lon == 0:
        return None
    accuracy = _real(gps.get(_GPS_H_ERROR))
    if accuracy is not None and accuracy < 0:
        accuracy = None
    altitude = _real(gps.get(_GPS_ALT))
    if altitude is not None and _altitude_below_sea_level(gps.get(_GPS_ALT_REF)):
        altitude = -altitude
    return GpsFix(lat=lat, lon=lon, accuracy_m=accuracy, altitude_m=altitude)


def exif_taken_at(exif: Image.Exif) -> datetime | None:
    """When the photo was taken, in UTC. Returns None if the camera did not record its UTC offset.

    A DateTimeOriginal without OffsetTimeOriginal is local time in an unknown zone. Guessing
    the zone could move a report by hours, so we don't.
    """
    try:
        fields = exif.get_ifd(ExifTags.IFD.Exif)
    except _METADATA_ERRORS:
        return None
    local = _text(fields.get(_TAG_DATETIME_ORIGINAL))
    offset = _text(fields.get(_TAG_OFFSET_TIME_ORIGINAL))
    if not local or not offset:
        return None
    try:
        taken = datetime.strptime(f"{local} {offset}", "%Y:%m:%d %H:%M:%S %z")
    except ValueError:
        return None
    return taken.astimezone(UTC)


def _other_image_format(data: bytes) -> str | None:
    for signature, name in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return _HEIF_BRANDS[data[8:12]]
    head = data[:1024].lstrip()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG"
    return None


def _check_upload(data: bytes, max_bytes: int) -> str:
    if len(data) > max_bytes:
        raise PhotoTooLarge(f"The photo is {len(data)} bytes; the limit is {max_bytes} bytes.")
    return sniff_format(data)


def _webp_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    canvas = _webp_canvas(data)
    if canvas is None:
        raise CorruptImage("The WebP file has no image header.")
    _check_dimensions(canvas, max_pixels)
    return canvas


def _check_structure(data: bytes, fmt: str) -> bytes | None:
    """Raise ``CorruptImage`` if the file is cut short or its framing is damaged, and
    ``HiddenContent`` if it is also another kind of file (a polyglot).

    Returns the EXIF block where it is found by walking the file (PNG eXIf, WebP EXIF chunks),
    since Pillow would decode a PNG to find an eXIf chunk placed after the image data.
    """
    if fmt == "jpeg":
        metadata_end, image_end = _check_jpeg(data)
        exif = None
    elif fmt == "png":
        exif, metadata_end, image_end = _check_png(data)
    else:
        exif, image_end = _check_webp(data)
        metadata_end = image_end  # WebP chunks are small and few: look at all of them
    _refuse_polyglots(data, metadata_end, image_end)
    return exif


# What another reader would take for its own file or run, and an image never holds outside its
# compressed pixels. Looked for in the metadata (segments and chunks before the pixels) and in
# whatever follows the image's end, where polyglots keep their second life (a ZIP after a
# JPEG's end marker, a page in a comment); stored photos are re-encoded, so this is for the
# copies that exist before that, and for whoever else reads the upload.
_ACTIVE = tuple(
    marker.lower()
    for marker in (
        b"<?php",
        b"<script",
        b"<html",
        b"<!doctype",
        b"<svg",
        b"<iframe",
        b"<body",
        b"javascript:",
        b"%pdf-",
    )
)
_BINARY_TRAILERS = (
    b"PK\x03\x04",  # ZIP (and JAR, DOCX, APK)
    b"Rar!\x1a\x07",
    b"7z\xbc\xaf\x27\x1c",
    b"\x1f\x8b\x08",  # gzip
    b"\x7fELF",
    b"MZ",  # Windows programs
    b"#!",  # scripts
    b"%PDF-",
)
_ZIP_END = b"PK\x05\x06"  # a ZIP is read from its end: its directory's last record
_ZIP_SEARCH = 65_557  # that record and the longest comment it may carry


def _ends_as_zip(data: bytes) -> bool:
    """Whether a ZIP reader would find its directory's last record: the record's signature
    with its 22 bytes and its comment ending exactly at the file's end. The four signature
    bytes alone turn up in about one photo in 65,000 by chance; with the length check, a
    chance match is about four billion times rarer."""
    start = max(0, len(data) - _ZIP_SEARCH)
    at = data.rfind(_ZIP_END, start)
    while at >= 0:
        comment = int.from_bytes(data[at + 20 : at + 22], "little")
        if at + 22 <= len(data) and at + 22 + comment == len(data):
            return True
        at = data.rfind(_ZIP_END, start, at)
    return False


def _refuse_polyglots(data: bytes, metadata_end: int, image_end: int) -> None:
    metadata = data[:metadata_end].lower()
    trailer = data[image_end:]
    found = next((m for m in _ACTIVE if m in metadata), None)
    if found is None and trailer:
        lowered = trailer.lower()
        found = next((m for m in _ACTIVE if m in lowered), None)
        if found is None:
            found = next((m for m in _BINARY_TRAILERS if trailer.startswith(m)), None)
    if found is None and _ends_as_zip(data):
        found = _ZIP_END
    if found is not None:
        raise HiddenContent(
            "The file is an image and something else as well (it holds "
            f"{found.decode('latin-1')!r}); send the photo alone."
        )


def _check_jpeg(data: bytes) -> tuple[int, int]:
    """Where the JPEG's metadata ends (its first scan starts) and where its image ends."""
    # Walk the marker segments to the first scan. In the compressed data that follows, every
    # 0xFF byte is followed by 0x00 or a restart marker, so the first FFD9 after it is the end
    # of the picture. Phones may append data after it (Samsung trailers, MPO pictures).
    scan = _jpeg_scan_start(data)
    if scan is None:
        raise CorruptImage("The JPEG file is incomplete: it has no image data.")
    end = data.find(b"\xff\xd9", scan)
    if end < 0:
        raise CorruptImage("The JPEG file is incomplete: it stops before its end marker.")
    return scan, end + 2


def _jpeg_scan_start(data: bytes) -> int | None:
    pos, size = 2, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return None
        if marker == 0xDA:  # start of scan
            start = pos + 2 + length
            return start if start < size else None
        pos += 2 + length
    return None


_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})


def _check_png(data: bytes) -> tuple[bytes | None, int, int]:
    """The eXIf block, where the metadata ends (the first IDAT) and where the image ends."""
    view = memoryview(data)
    pos, size, exif, first_idat = 8, len(data), None, None
    while True:
        if pos + 12 > size:
            raise CorruptImage("The PNG file is incomplete: it stops before its IEND chunk.")
        length = int.from_bytes(view[pos : pos + 4], "big")
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > size:
            raise CorruptImage("The PNG file is incomplete: its last chunk is cut short.")
        kind = bytes(view[pos + 4 : pos + 8])
        body = view[pos + 8 : end - 4]
        if zlib.crc32(body, zlib.crc32(kind)) != int.from_bytes(view[end - 4 : end], "big"):
            raise CorruptImage(
                f"The PNG file is damaged: its {kind.decode('latin-1')!r} chunk fails its checksum."
            )
        if kind == b"eXIf":
            exif = bytes(body)
        elif kind == b"IDAT" and first_idat is None:
            first_idat = pos
        elif kind == b"IEND":
            return exif, pos if first_idat is None else first_idat, end
        pos = end


def _check_webp(data: bytes) -> tuple[bytes | None, int]:
    """The EXIF block, and where the RIFF file ends."""
    end = 8 + int.from_bytes(data[4:8], "little")
    if end > len(data):
        raise CorruptImage("The WebP file is incomplete: it is shorter than its header says.")
    pos, exif, has_image = 12, None, False
    while pos + 8 <= end:
        kind = data[pos : pos + 4]
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if pos + 8 + length > end:
            raise CorruptImage("The WebP file is incomplete: its last chunk is cut short.")
        if kind in (b"VP8 ", b"VP8L", b"ANMF"):
            has_image = True
        elif kind == b"EXIF":
            exif = data[pos + 8 : pos + 8 + length]
        pos += 8 + length + (length & 1)  # chunks are padded to an even length
    if not has_image:
        raise CorruptImage("The WebP file has no image data.")
    return exif, end


def _stored_size(
    decoded: tuple[int, int], target: tuple[int, int], orientation: int
) -> tuple[int, int]:
    """The stored image's size: as decoded (maybe at reduced scale), shrunk to ``target`` if
    still larger, then turned upright (see ``_upright_rgb``)."""
    width, height = target if max(decoded) > max(target) else decoded
    return (height, width) if orientation in _SWAPS_AXES else (width, height)


def _webp_canvas(data: bytes) -> tuple[int, int] | None:
    # The first chunk of a WebP file is always VP8X, VP8L or VP8, and each one starts with the size.
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return (
            int.from_bytes(data[24:27], "little") + 1,
            int.from_bytes(data[27:30], "little") + 1,
        )
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    return None


def _open(data: bytes, fmt: str) -> Image.Image:
    try:
        # Limiting the formats to the one already sniffed stops Pillow from trying its other
        # parsers on the upload. This only reads the header.
        return Image.open(io.BytesIO(data), formats=[fmt.upper()])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own limit (Image.MAX_IMAGE_PIXELS). It is well above ours, so it only
        # applies when a caller raises max_pixels. The warning reaches here only when warnings
        # are turned into errors, as they are in tests.
        raise TooManyPixels("The image has too many pixels.") from exc
    except ValueError as exc:
        if "MAX_TEXT_CHUNK" in str(exc) or "MAX_TEXT_MEMORY" in str(exc):
            # Text or ICC chunks that inflate beyond PngImagePlugin's limits (set above).
            raise DecompressionBomb(
                "The file's metadata inflates to more than we read; send the photo alone."
            ) from exc
        raise CorruptImage(f"The file looks like {fmt.upper()} but can't be read.") from exc
    except _METADATA_ERRORS as exc:
        raise CorruptImage(f"The file looks like {fmt.upper()} but can't be read.") from exc


def _check_dimensions(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise TooManyPixels(
            f"The image is {width}x{height} pixels; the limit is {max_pixels:,} pixels."
        )
    if min(width, height) < MIN_EDGE:
        raise PhotoTooSmall(
            f"The image is {width}x{height} pixels; each edge must be at least {MIN_EDGE}."
        )


def _fit(size: tuple[int, int], edge: int) -> tuple[int, int]:
    """``size`` scaled down, keeping its aspect ratio, so the long edge is at most ``edge``."""
    width, height = size
    long_edge = max(width, height)
    if long_edge <= edge:
        return size
    scale = edge / long_edge
    return max(1, round(width * scale)), max(1, round(height * scale))


def _draft(img: Image.Image, target: tuple[int, int]) -> None:
    """Let libjpeg decode at the smallest DCT scale that still gets close enough to ``target``."""
    width, height = img.size
    floor = max(target) * DRAFT_SLACK
    for scale in (8, 4, 2):
        if max(width, height) // scale >= floor:
            # Ask for the floored size: draft picks the largest scale whose result is at least
            # the size asked for, so asking for the rounded-up size could miss this scale.
            img.draft("RGB", (width // scale, height // scale))
            return


def _exif(img: Image.Image | None, found: bytes | None) -> Image.Exif:
    """The EXIF of an opened (not decoded) image, or the block ``_check_structure`` found."""
    try:
        # A PNG's getexif() decodes the whole image when the header held no eXIf chunk.
        if img is not None and (img.format != "PNG" or "exif" in img.info):
            return img.getexif()
        exif = Image.Exif()
        if found:
            exif.load(found)
        return exif
    except _METADATA_ERRORS:
        # Metadata is only a hint. A damaged EXIF block must not get a good photo rejected.
        return Image.Exif()


def _orientation(exif: Image.Exif) -> int:
    value = exif.get(_TAG_ORIENTATION)
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def _upright_rgb(img: Image.Image, target: tuple[int, int], orientation: int) -> Image.Image:
    """A fresh RGB image: shrunk to ``target``, alpha flattened onto white, made upright."""
    source = img
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        img = img.convert("RGBA")
    elif img.mode.startswith("I"):
        # 16-bit greyscale PNG: scale to 8 bits (a plain convert would clip everything to white).
        img = img.convert("I").point(lambda v: v / 256).convert("RGB")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    # Only ever shrink. A draft-decoded JPEG may already be a little under the target. Compare
    # long edges only: rounding can leave its short edge a pixel over.
    if max(img.size) > max(target):
        img = _shrink(img, target)
    if img.mode == "RGBA":
        flat = Image.new("RGB", img.size, "white")
        flat.paste(img, mask=img.getchannel("A"))
        img = flat
    if orientation in _UPRIGHT:
        img = img.transpose(_UPRIGHT[orientation])
    if img is source:
        img = img.copy()  # never encode the opened file object, which carries the upload's info
    img.info = {}
    return img


def _shrink(img: Image.Image, size: tuple[int, int], *, reducing_gap: float = 2.0) -> Image.Image:
    if img.size == size:
        return img
    # Bicubic after a fast box reduction (reducing_gap): close to Lanczos quality at a fraction
    # of its cost.
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=reducing_gap)


def _encode(img: Image.Image) -> bytes:
    # Baseline, default Huffman tables: a progressive (or optimised) encode of a 2048 px photo
    # makes a file about 12 % smaller but takes 4 times as long, a third of the whole budget.
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, progressive=False, optimize=False)
    return buf.getvalue()


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    return value.strip("\x00 ").upper() or None


def _real(value: object) -> float | None:
    if not isinstance(value, numbers.Real):
        return None
    number = float(value)  # a rational over zero comes out as NaN
    return number if math.isfinite(number) else None


def _degrees(value: object, ref: str | None, positive: str, negative: str) -> float | None:
    if ref not in (positive, negative):
        return None
    parts = value if isinstance(value, tuple) else (value,)
    if not 1 <= len(parts) <= 3:
        return None
    values = [_real(part) for part in parts]
    if any(v is None or v < 0 for v in values):
        return None
    degrees, minutes, seconds = [v for v in values if v is not None] + [0.0] * (3 - len(values))
    if minutes >= 60 or seconds >= 60:
        return None
    total = degrees + minutes / 60 + seconds / 3600
    return -total if ref == negative else total


def _altitude_below_sea_level(ref: object) -> bool:
    if isinstance(ref, bytes):
        return ref[:1] == b"\x01"
    return ref == 1

"""Images made in the tests (no binary fixtures in the repository)."""

from __future__ import annotations

import io
from fractions import Fraction

from PIL import ExifTags, Image


def _dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    value = abs(value)
    degrees = int(value)
    minutes_float = (value - degrees) * 60
    minutes = int(minutes_float)
    seconds = Fraction(round((minutes_float - minutes) * 60 * 10000), 10000)
    return Fraction(degrees), Fraction(minutes), seconds


def jpeg(
    size: tuple[int, int] = (640, 480),
    *,
    lon: float | None = None,
    lat: float | None = None,
    orientation: int | None = None,
    camera: str | None = "KerbCam 1",
    serial: str | None = None,
    artist: str | None = None,
) -> bytes:
    """A JPEG with a gradient, optionally with EXIF GPS, orientation, a camera model, the
    camera's serial number and its author (``Artist``)."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    exif = Image.Exif()
    if camera:
        exif[ExifTags.Base.Model] = camera
    if serial:
        exif[ExifTags.Base.BodySerialNumber] = serial
    if artist:
        exif[ExifTags.Base.Artist] = artist
    if orientation:
        exif[ExifTags.Base.Orientation] = orientation
    if lon is not None and lat is not None:
        exif[ExifTags.IFD.GPSInfo] = {
            ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S",
            ExifTags.GPS.GPSLatitude: _dms(lat),
            ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W",
            ExifTags.GPS.GPSLongitude: _dms(lon),
        }
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80, exif=exif.tobytes())
    return out.getvalue()


def image_bytes(fmt: str, size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, fmt)
    return out.getvalue()


def without_jpeg_segment(data: bytes, marker: int) -> bytes:
    """``data`` (a JPEG) without its ``marker`` segments before the first scan, e.g. 0xDB (DQT).

    Without quantization tables the file still looks whole (header, scan, end marker), and only
    decoding finds out that it cannot be read.
    """
    out, pos = bytearray(data[:2]), 2
    while data[pos + 1] != 0xDA:
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] != marker:
            out += data[pos : pos + 2 + length]
        pos += 2 + length
    return bytes(out + data[pos:])

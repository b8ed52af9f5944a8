"""Photo intake processing: every image here is made with Pillow on the fly (no binary fixtures)."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile, PngImagePlugin, TiffImagePlugin

from app.media import processing
from app.media.processing import (
    DRAFT_SLACK,
    CheckedPhoto,
    CorruptImage,
    NotAnImage,
    PhotoRejected,
    PhotoTooLarge,
    PhotoTooSmall,
    TooManyPixels,
    UnsupportedFormat,
    check_photo,
    exif_gps,
    exif_taken_at,
    process_photo,
)
from tests.images import without_jpeg_segment

# Westminster, with the camera's Southern/Western counterpart below.
LONDON_GPS = {
    1: "N",
    2: (51.0, 30.0, 2.5),
    3: "W",
    4: (0.0, 7.0, 39.0),
    5: b"\x00",
    6: 12.5,
    31: 4.0,
}


def _exif(
    *,
    orientation: int | None = None,
    gps: dict[int, Any] | None = None,
    fields: dict[str, str] | None = None,
) -> Image.Exif:
    """EXIF with IFD0 orientation, a GPS IFD and Exif IFD ``fields`` named as in ExifTags.Base."""
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps is not None:
        exif[ExifTags.IFD.GPSInfo] = gps
    if fields:
        exif[ExifTags.IFD.Exif] = {getattr(ExifTags.Base, k): v for k, v in fields.items()}
    # Round-trip through bytes, as an upload's EXIF is: Pillow only reads sub-IFDs that way.
    loaded = Image.Exif()
    loaded.load(exif.tobytes())
    return loaded


def _halves(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue, so orientation changes are visible in the pixels."""
    img = Image.new(mode, size, "blue")
    img.paste("red", (0, 0, size[0] // 2, size[1]))
    return img


def _encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _jpeg(size: tuple[int, int] = (64, 48), **params: Any) -> bytes:
    return _encode(_halves(size), "JPEG", quality=90, **params)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (1-bit grey), with one tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _reopen(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _assert_no_metadata(data: bytes) -> None:
    img = _reopen(data)
    assert img.format == "JPEG"
    assert len(img.getexif()) == 0
    for key in ("exif", "xmp", "icc_profile", "comment", "XML:com.adobe.xmp"):
        assert key not in img.info
    for marker in (b"Exif\x00\x00", b"http://ns.adobe.com/xap", b"ICC_PROFILE", b"secret"):
        assert marker not in data


# --- what is stored ---------------------------------------------------------------------------


def test_jpeg_is_stored_upright_and_without_any_metadata() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = _jpeg(
        (64, 32),
        exif=_exif(
            orientation=6, gps=LONDON_GPS, fields={"DateTimeOriginal": "2024:05:01 10:11:12"}
        ),
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://ns.adobe.com/xap/1.0/">'
        b"secret</rdf:RDF></x:xmpmeta>",
        icc_profile=srgb,
        comment=b"secret comment",
    )

    photo = process_photo(data)

    # Orientation 6: the camera stored it lying down, so it must be turned 90 degrees clockwise
    # and the red (left) half ends up on top.
    assert (photo.width, photo.height) == (32, 64)
    stored = _reopen(photo.image).convert("RGB")
    assert stored.size == (32, 64)
    top, bottom = stored.getpixel((16, 8)), stored.getpixel((16, 56))
    assert isinstance(top, tuple)
    assert isinstance(bottom, tuple)
    assert top[0] > 200
    assert top[2] < 60
    assert bottom[2] > 200
    assert bottom[0] < 60
    _assert_no_metadata(photo.image)
    _assert_no_metadata(photo.thumbnail)
    assert photo.gps is not None  # read before stripping


def test_result_describes_the_stored_files() -> None:
    photo = process_photo(_jpeg((300, 200)), max_edge=150, thumb_edge=60)

    assert photo.content_type == "image/jpeg"
    assert photo.original_format == "jpeg"
    assert photo.sha256 == hashlib.sha256(photo.image).hexdigest()
    assert _reopen(photo.image).size == (photo.width, photo.height)
    assert _reopen(photo.thumbnail).size == (photo.thumb_width, photo.thumb_height)
    assert "image=" not in repr(photo)  # the bytes stay out of logs


@pytest.mark.parametrize(
    ("size", "max_edge", "expected"),
    [
        ((300, 200), 100, (100, 67)),
        ((200, 300), 100, (67, 100)),
        ((100, 80), 2048, (100, 80)),  # never enlarged
    ],
)
def test_long_edge_is_capped(
    size: tuple[int, int], max_edge: int, expected: tuple[int, int]
) -> None:
    png = _encode(_halves(size), "PNG")
    photo = process_photo(png, max_edge=max_edge)
    assert (photo.width, photo.height) == expected


def test_large_jpeg_is_decoded_at_reduced_scale_and_still_capped() -> None:
    # 1000 px over a 240 px cap: libjpeg decodes at 1/4 (250 px), and that is shrunk to 240.
    photo = process_photo(_jpeg((1000, 800), exif=_exif(gps=LONDON_GPS)), max_edge=240)
    assert (photo.width, photo.height) == (240, 192)
    assert photo.gps is not None  # EXIF survives the reduced-scale decode
    # 1000 px over a 260 px cap: 1/4 scale gives 250 px, within DRAFT_SLACK, so no resize.
    photo = process_photo(_jpeg((1000, 800)), max_edge=260)
    assert DRAFT_SLACK * 260 <= photo.width <= 260
    assert (photo.width, photo.height) == (250, 200)
    # 1000 px over a 600 px cap: 1/2 scale would give 500 px, too far under, so decode in full.
    photo = process_photo(_jpeg((1000, 800)), max_edge=600)
    assert (photo.width, photo.height) == (600, 480)


def test_thumbnail_is_made_from_the_upright_image() -> None:
    photo = process_photo(_jpeg((640, 320), exif=_exif(orientation=8)), thumb_edge=100)
    assert (photo.width, photo.height) == (320, 640)
    assert (photo.thumb_width, photo.thumb_height) == (50, 100)


def test_png_with_alpha_is_flattened_onto_white() -> None:
    img = _halves((64, 64), "RGBA")
    img.paste((0, 0, 0, 0), (0, 32, 64, 64))  # bottom half fully transparent
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "secret reporter")
    png = _encode(img, "PNG", pnginfo=info, exif=_exif(gps=LONDON_GPS))

    photo = process_photo(png)

    assert photo.original_format == "png"
    stored = _reopen(photo.image)
    assert stored.mode == "RGB"
    bottom = stored.getpixel((40, 56))
    assert isinstance(bottom, tuple)
    assert min(bottom) > 240
    assert photo.gps == exif_gps(_exif(gps=LONDON_GPS))
    _assert_no_metadata(photo.image)


def test_palette_png_with_transparency_is_flattened_onto_white() -> None:
    img = Image.new("P", (32, 32), 0)
    img.putpalette([0, 0, 0, 255, 0, 0])
    img.paste(1, (0, 0, 16, 32))
    photo = process_photo(_encode(img, "PNG", transparency=0))
    stored = _reopen(photo.image)
    left, right = stored.getpixel((4, 16)), stored.getpixel((28, 16))
    assert isinstance(left, tuple)
    assert isinstance(right, tuple)
    assert left[0] > 200
    assert left[1] < 60
    assert min(right) > 240  # transparent black became white


def test_16_bit_greyscale_png_is_scaled_not_clipped() -> None:
    photo = process_photo(_encode(Image.new("I;16", (32, 32), 40000), "PNG"))
    grey = _reopen(photo.image).getpixel((16, 16))
    assert isinstance(grey, tuple)
    assert 150 <= grey[0] <= 162  # 40000 / 256 = 156, not 255


def test_multi_picture_jpeg_uses_the_first_picture() -> None:
    # Many phones write MPO: a JPEG with extra pictures appended, which Pillow opens as "MPO".
    first, second = _halves((64, 48)), Image.new("RGB", (64, 48), "green")
    mpo = _encode(first, "MPO", save_all=True, append_images=[second], exif=_exif(gps=LONDON_GPS))
    assert Image.open(io.BytesIO(mpo)).format == "MPO"
    photo = process_photo(mpo)
    assert photo.original_format == "jpeg"
    assert photo.gps is not None
    pixel = _reopen(photo.image).getpixel((8, 24))
    assert isinstance(pixel, tuple)
    assert pixel[0] > 200  # red, from the first picture


def test_cmyk_jpeg_is_stored_as_rgb() -> None:
    photo = process_photo(_encode(_halves((64, 48)).convert("CMYK"), "JPEG"))
    stored = _reopen(photo.image)
    assert stored.mode == "RGB"
    pixel = stored.getpixel((56, 24))
    assert isinstance(pixel, tuple)
    assert pixel[2] > 200  # still blue
    assert pixel[0] < 60


@pytest.mark.parametrize("params", [{}, {"lossless": True}], ids=["lossy", "lossless"])
def test_webp_is_accepted_and_its_metadata_dropped(params: dict[str, Any]) -> None:
    webp = _encode(_halves((80, 40)), "WEBP", exif=_exif(orientation=6, gps=LONDON_GPS), **params)
    photo = process_photo(webp)
    assert photo.original_format == "webp"
    assert (photo.width, photo.height) == (40, 80)
    assert photo.gps is not None
    assert photo.gps.lon < 0
    _assert_no_metadata(photo.image)
    _assert_no_metadata(photo.thumbnail)


# --- what is read from EXIF -------------------------------------------------------------------


def test_gps_is_read_from_the_upload() -> None:
    photo = process_photo(_jpeg(exif=_exif(gps=LONDON_GPS)))
    assert photo.gps is not None
    assert photo.gps.lat == pytest.approx(51 + 30 / 60 + 2.5 / 3600)
    assert photo.gps.lon == pytest.approx(-(7 / 60 + 39 / 3600))
    assert (photo.gps.accuracy_m, photo.gps.altitude_m) == (4.0, 12.5)


def test_southern_and_western_refs_are_negative() -> None:
    gps = {1: "S", 2: (33.0, 52.0, 7.5), 3: "W", 4: (151.0, 12.0, 30.0), 5: b"\x01", 6: 3.0}
    fix = exif_gps(_exif(gps=gps))
    assert fix is not None
    assert fix.lat == pytest.approx(-(33 + 52 / 60 + 7.5 / 3600))
    assert fix.lon == pytest.approx(-(151 + 12 / 60 + 30 / 3600))
    assert fix.altitude_m == -3.0  # altitude ref 1: below sea level
    assert fix.accuracy_m is None


def test_decimal_degree_gps_is_read() -> None:
    fix = exif_gps(_exif(gps={1: "N", 2: (48.8566,), 3: "E", 4: (2.3522,)}))
    assert fix is not None
    assert fix.lat == pytest.approx(48.8566)
    assert fix.lon == pytest.approx(2.3522)


@pytest.mark.parametrize(
    "gps",
    [
        {},
        {1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)},  # "no fix"
        {1: "N", 2: (95.0, 0.0, 0.0), 3: "E", 4: (1.0, 0.0, 0.0)},  # latitude out of range
        {1: "N", 2: (1.0, 0.0, 0.0), 3: "E", 4: (181.0, 0.0, 0.0)},  # longitude out of range
        {1: "N", 2: (1.0, 75.0, 0.0), 3: "E", 4: (1.0, 0.0, 0.0)},  # 75 minutes
        {2: (51.0, 30.0, 0.0), 3: "E", 4: (1.0, 0.0, 0.0)},  # hemisphere unknown
        {1: "Q", 2: (51.0, 30.0, 0.0), 3: "E", 4: (1.0, 0.0, 0.0)},
        {1: "N", 2: (51.0, 30.0, 0.0), 3: "E"},  # no longitude
        {1: "N", 2: (51.0, 30.0, 0.0), 3: "E", 4: (1.0, 0.0, 0.0), 9: "V"},  # void fix
    ],
    ids=[
        "empty",
        "zero-zero",
        "lat-range",
        "lon-range",
        "minutes",
        "no-ref",
        "bad-ref",
        "no-lon",
        "void",
    ],
)
def test_unbelievable_gps_is_ignored(gps: dict[int, Any]) -> None:
    assert exif_gps(_exif(gps=gps)) is None


def _gps_with(**values: Any) -> Image.Exif:
    """LONDON_GPS with raw values no EXIF writer would produce, set after loading."""
    exif = _exif(gps=LONDON_GPS)
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    for name, value in values.items():
        gps[getattr(ExifTags.GPS, name)] = value
    return exif


@pytest.mark.parametrize(
    "values",
    [
        {"GPSLatitude": (TiffImagePlugin.IFDRational(1, 0), 0.0, 0.0)},  # NaN
        {"GPSLongitude": (float("inf"),)},
        {"GPSLatitude": (-51.0, 30.0, 0.0)},  # the sign belongs in the ref
        {"GPSLatitude": "51.5"},
        {"GPSLatitude": (1.0, 2.0, 3.0, 4.0)},
        {"GPSLatitudeRef": 1},
    ],
    ids=["nan", "inf", "negative", "text", "four-parts", "int-ref"],
)
def test_malformed_gps_values_are_ignored(values: dict[str, Any]) -> None:
    assert exif_gps(_gps_with()) is not None
    assert exif_gps(_gps_with(**values)) is None


def test_damaged_accuracy_or_altitude_only_loses_that_field() -> None:
    fix = exif_gps(
        _gps_with(GPSAltitude=TiffImagePlugin.IFDRational(1, 0), GPSHPositioningError=-1.0)
    )
    assert fix is not None
    assert fix.lat == pytest.approx(51.500694, abs=1e-6)
    assert (fix.altitude_m, fix.accuracy_m) == (None, None)


# Pillow warns about damaged EXIF and carries on; outside tests warnings are not errors.
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("damage", ["truncated", "bad-entry-count", "garbage"])
def test_damaged_exif_loses_the_metadata_not_the_photo(damage: str) -> None:
    raw = _exif(orientation=6, gps=LONDON_GPS).tobytes()
    blob = {
        "truncated": raw[: len(raw) // 2],
        "bad-entry-count": raw[:10] + b"\xff\xff" + raw[12:],
        "garbage": b"Exif\x00\x00" + b"\xff" * 40,
    }[damage]
    photo = process_photo(_jpeg(exif=blob))
    assert photo.width in (48, 64)
    assert photo.gps is None
    _assert_no_metadata(photo.image)


def test_refs_as_padded_bytes_are_understood() -> None:
    fix = exif_gps(_gps_with(GPSLatitudeRef=b"S\x00", GPSLongitudeRef=b"e"))
    assert fix is not None
    assert fix.lat < 0
    assert fix.lon > 0


def test_taken_at_uses_the_recorded_offset() -> None:
    exif = _exif(fields={"DateTimeOriginal": "2024:05:01 10:11:12", "OffsetTimeOriginal": "+10:00"})
    taken = exif_taken_at(exif)
    assert taken == datetime(2024, 5, 1, 0, 11, 12, tzinfo=UTC)
    assert taken is not None
    assert taken.utcoffset() == timedelta(0)  # normalised to UTC, not left at +10:00

    photo = process_photo(_jpeg(exif=exif))
    assert photo.taken_at == datetime(2024, 5, 1, 0, 11, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "fields",
    [
        {"DateTimeOriginal": "2024:05:01 10:11:12"},  # local time, zone unknown
        {"DateTimeOriginal": "0000:00:00 00:00:00", "OffsetTimeOriginal": "+00:00"},
        {"DateTimeOriginal": "yesterday", "OffsetTimeOriginal": "+01:00"},
        {"OffsetTimeOriginal": "+01:00"},
        {},
    ],
)
def test_taken_at_is_none_without_a_usable_time_and_offset(fields: dict[str, str]) -> None:
    assert exif_taken_at(_exif(fields=fields)) is None


# --- what is rejected -------------------------------------------------------------------------


def test_text_is_not_an_image() -> None:
    with pytest.raises(NotAnImage) as caught:
        process_photo(b"Pothole on Main St, please fix\n" * 10)
    assert caught.value.code == "not_an_image"
    assert isinstance(caught.value, PhotoRejected)


def test_empty_upload_is_not_an_image() -> None:
    with pytest.raises(NotAnImage):
        process_photo(b"")


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_unsupported(fmt: str) -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        process_photo(_encode(_halves((32, 32)), fmt))
    assert caught.value.code == "unsupported_format"
    assert fmt in caught.value.reason
    assert "JPEG, PNG, WEBP" in caught.value.reason


def test_heic_is_unsupported() -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    with pytest.raises(UnsupportedFormat, match="HEIC"):
        process_photo(heic)


def test_truncated_jpeg_is_corrupt() -> None:
    data = _encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG")
    with pytest.raises(CorruptImage) as caught:
        process_photo(data[: len(data) * 2 // 3])
    assert caught.value.code == "corrupt_image"


def test_truncated_jpeg_is_corrupt_when_draft_decoding() -> None:
    data = _encode(Image.effect_noise((512, 512), 64).convert("RGB"), "JPEG")
    with pytest.raises(CorruptImage):
        process_photo(data[: len(data) // 2], max_edge=64)


def test_truncated_png_is_corrupt() -> None:
    data = _encode(Image.effect_noise((128, 128), 64), "PNG")
    with pytest.raises(CorruptImage):
        process_photo(data[: len(data) // 2])


def test_jpeg_with_a_broken_header_is_corrupt() -> None:
    with pytest.raises(CorruptImage):
        process_photo(b"\xff\xd8\xff\xe0" + b"\x00" * 100)


def test_too_many_bytes_is_rejected_before_parsing() -> None:
    data = _jpeg()
    assert process_photo(data, max_bytes=len(data)).width == 64
    with pytest.raises(PhotoTooLarge) as caught:
        process_photo(data, max_bytes=len(data) - 1)
    assert caught.value.code == "too_large_bytes"
    with pytest.raises(PhotoTooLarge):
        process_photo(b"not even an image", max_bytes=4)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (8_000, 8_000),  # over our 40 MP, under Pillow's own limit
        (50_000, 50_000),  # over Pillow's error limit too (DecompressionBombError)
    ],
)
def test_decompression_bomb_png_is_rejected_from_its_header(width: int, height: int) -> None:
    bomb = _png_header_only(width, height)
    assert len(bomb) < 200  # nothing here could be decoded to gigabytes without us noticing
    with pytest.raises(TooManyPixels) as caught:
        process_photo(bomb)
    assert caught.value.code == "too_many_pixels"


def test_pillow_bomb_warning_becomes_too_many_pixels() -> None:
    # 100 MP is in Pillow's warning band. Under this suite's filterwarnings=error the warning is
    # raised, and in production it is only issued and our own check rejects the photo.
    bomb = _png_header_only(10_000, 10_000)
    with pytest.raises(TooManyPixels):
        process_photo(bomb, max_pixels=10**9)
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(TooManyPixels):
        process_photo(bomb)


@pytest.mark.parametrize("params", [{}, {"lossless": True}, {"exif": b"Exif\x00\x00"}])
def test_webp_canvas_is_checked_before_pillow_opens_it(
    params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pillow allocates a WebP's whole canvas as it opens it, so the header has to be read first.
    webp = _encode(_halves((64, 48)), "WEBP", **params)

    def must_not_open(*args: object, **kwargs: object) -> Image.Image:
        raise AssertionError("Image.open called before the size check")

    monkeypatch.setattr(Image, "open", must_not_open)
    with pytest.raises(TooManyPixels, match="64x48"):
        process_photo(webp, max_pixels=64 * 48 - 1)


def test_webp_without_an_image_header_is_corrupt() -> None:
    with pytest.raises(CorruptImage):
        process_photo(b"RIFF\x20\x00\x00\x00WEBPJUNK" + b"\x00" * 32)


@pytest.mark.parametrize("size", [(8, 64), (64, 15)])
def test_tiny_images_are_too_small(size: tuple[int, int]) -> None:
    with pytest.raises(PhotoTooSmall) as caught:
        process_photo(_encode(_halves(size), "PNG"))
    assert caught.value.code == "too_small"


def test_rejections_have_stable_codes_and_no_web_framework() -> None:
    codes = {
        cls.code
        for cls in (
            NotAnImage,
            UnsupportedFormat,
            CorruptImage,
            PhotoTooLarge,
            TooManyPixels,
            PhotoTooSmall,
        )
    }
    assert codes == {
        "not_an_image",
        "unsupported_format",
        "corrupt_image",
        "too_large_bytes",
        "too_many_pixels",
        "too_small",
    }
    source = Path(processing.__file__).read_text(encoding="utf-8")
    assert "fastapi" not in source
    assert "starlette" not in source


# --- the request's checks, without decoding -----------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("check_photo decoded the image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", must_not_decode)
    monkeypatch.setattr(Image.Image, "load", must_not_decode)


@pytest.mark.parametrize(
    ("fmt", "size", "orientation", "max_edge"),
    [
        ("JPEG", (4000, 3000), 6, 2048),  # a phone photo: 1/2-scale decode, no resize, turned
        ("JPEG", (4000, 3000), 1, 1000),  # 1/4-scale decode, then shrunk
        ("JPEG", (1001, 777), 8, 240),  # odd sizes: the reduced-scale decode rounds up
        ("JPEG", (3000, 200), 3, 2048),  # a panorama: full decode, shrunk
        ("JPEG", (640, 480), 5, 2048),  # small: as it is, turned
        ("PNG", (700, 300), 6, 256),
        ("WEBP", (300, 700), 8, 256),
    ],
)
def test_check_announces_exactly_the_size_that_is_stored(
    fmt: str,
    size: tuple[int, int],
    orientation: int,
    max_edge: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _encode(_halves(size), fmt, exif=_exif(orientation=orientation, gps=LONDON_GPS))
    with monkeypatch.context() as patched:
        _no_decoding(patched)
        checked = check_photo(data, max_edge=max_edge)
    photo = process_photo(data, max_edge=max_edge)
    assert (checked.width, checked.height) == (photo.width, photo.height)
    assert _reopen(photo.image).size == (checked.width, checked.height)
    assert checked.original_format == fmt.lower()
    assert checked.gps == photo.gps
    assert checked.gps is not None


def test_check_reads_gps_and_time_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    exif = _exif(
        gps=LONDON_GPS,
        fields={"DateTimeOriginal": "2024:05:01 10:11:12", "OffsetTimeOriginal": "+02:00"},
    )
    data = _jpeg((64, 48), exif=exif)
    _no_decoding(monkeypatch)
    checked = check_photo(data)
    assert checked == CheckedPhoto(
        original_format="jpeg",
        width=64,
        height=48,
        gps=exif_gps(exif),
        taken_at=datetime(2024, 5, 1, 8, 11, 12, tzinfo=UTC),
    )


def test_check_finds_a_png_exif_chunk_placed_after_the_image_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pillow only finds an eXIf chunk after IDAT by decoding the whole PNG; the check walks the
    # chunks instead.
    png = _encode(_halves((64, 64)), "PNG")
    iend = png.rindex(b"IEND") - 4
    late = png[:iend] + _png_chunk(b"eXIf", _exif(orientation=6, gps=LONDON_GPS).tobytes())
    late += png[iend:]
    _no_decoding(monkeypatch)
    checked = check_photo(late)
    assert checked.gps == exif_gps(_exif(gps=LONDON_GPS))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_check_rejects_files_cut_short_without_decoding(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _encode(Image.effect_noise((256, 256), 64).convert("RGB"), fmt)
    _no_decoding(monkeypatch)
    for cut in (len(data) - 1, len(data) * 2 // 3, len(data) // 3):
        with pytest.raises(CorruptImage, match="incomplete"):
            check_photo(data[:cut])


def test_check_accepts_data_after_the_jpeg_end_marker() -> None:
    # Phones append data after the picture (Samsung's trailer, MPO's second picture).
    data = _jpeg((64, 48)) + b"SEFH" + b"\x00\xff" * 100 + b"SEFT"
    assert check_photo(data).width == 64
    assert process_photo(data).width == 64


def test_check_rejects_a_png_whose_chunk_fails_its_checksum() -> None:
    png = bytearray(_encode(Image.effect_noise((64, 64), 64), "PNG"))
    png[png.index(b"IDAT") + 10] ^= 0xFF
    with pytest.raises(CorruptImage, match="checksum"):
        check_photo(bytes(png))


def test_check_accepts_data_after_png_iend_and_rejects_a_png_without_it() -> None:
    png = _encode(_halves((32, 32)), "PNG")
    assert check_photo(png + b"trailing junk").width == 32
    iend = png.rindex(b"IEND") - 4
    with pytest.raises(CorruptImage, match="IEND"):
        check_photo(png[:iend])


def test_check_rejects_a_webp_without_image_data() -> None:
    webp = _encode(_halves((32, 32)), "WEBP")
    chunk = webp[12:16]
    assert chunk in (b"VP8 ", b"VP8L", b"VP8X")
    renamed = webp.replace(b"VP8 ", b"JUNK").replace(b"VP8L", b"JUNK")
    renamed = renamed[:12] + b"VP8X" + renamed[16:] if chunk == b"VP8X" else renamed
    with pytest.raises(CorruptImage):
        check_photo(renamed)


def test_check_rejects_what_process_rejects_before_decoding() -> None:
    with pytest.raises(PhotoTooLarge):
        check_photo(_jpeg(), max_bytes=10)
    with pytest.raises(NotAnImage):
        check_photo(b"hello")
    with pytest.raises(UnsupportedFormat):
        check_photo(_encode(_halves((32, 32)), "GIF"))
    with pytest.raises(TooManyPixels):
        check_photo(_png_header_only(8_000, 8_000))
    with pytest.raises(PhotoTooSmall):
        check_photo(_encode(_halves((8, 64)), "PNG"))
    with pytest.raises(CorruptImage):
        check_photo(b"\xff\xd8\xff\xe0" + b"\x00" * 100)


@pytest.mark.parametrize("kind", ["jpeg-without-quantization-tables", "png-with-bad-zlib-data"])
def test_damage_inside_the_pixel_data_passes_the_check_and_fails_decoding(kind: str) -> None:
    if kind.startswith("jpeg"):
        data = without_jpeg_segment(_jpeg((640, 480)), 0xDB)
    else:
        png = _encode(Image.effect_noise((64, 64), 64), "PNG")
        start = png.index(b"IDAT") - 4
        length = int.from_bytes(png[start : start + 4], "big")
        body = png[start + 8 : start + 8 + length]
        garbled = body[:2] + bytes(b ^ 0x55 for b in body[2:])
        data = png[:start] + _png_chunk(b"IDAT", garbled) + png[start + 12 + length :]
    assert check_photo(data).width in (64, 640)
    with pytest.raises(CorruptImage, match="damaged or incomplete"):
        process_photo(data)


def test_stored_jpeg_is_baseline_for_speed() -> None:
    photo = process_photo(_jpeg((300, 200)))
    assert "progressive" not in _reopen(photo.image).info

"""Photo storage backends. Local storage runs on tmp_path; S3 uses a stand-in client."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from app.media.storage import (
    InvalidPhotoKey,
    LocalPhotoStorage,
    PhotoNotFound,
    S3PhotoStorage,
    StorageUnavailable,
    is_private_key,
    make_storage,
    new_original_key,
    new_photo_keys,
    validate_key,
)

BAD_KEYS = [
    "",
    "../escape.jpg",
    "ab/../../escape.jpg",
    "ab/..",
    "/etc/passwd",
    "ab//cd.jpg",
    "ab/cd/",
    ".hidden.jpg",
    "ab/.part",
    "ab\\cd.jpg",
    "AB/cd.jpg",
    "ab/c d.jpg",
    "ab/cd.jpg\x00",
    "ab/caf\u00e9.jpg",
    "a" * 256,
]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- keys -------------------------------------------------------------------------------------


def test_new_keys_are_random_sharded_and_valid() -> None:
    image, thumb = new_photo_keys()
    assert re.fullmatch(r"([0-9a-f]{2})/([0-9a-f]{2})/\1\2[0-9a-f]{28}\.jpg", image)
    assert thumb == image.removesuffix(".jpg") + "_t.jpg"
    assert validate_key(image) == image
    assert validate_key(thumb) == thumb
    assert len({new_photo_keys()[0] for _ in range(50)}) == 50


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_rejected(key: str) -> None:
    with pytest.raises(InvalidPhotoKey):
        validate_key(key)


# --- local ------------------------------------------------------------------------------------


async def test_local_put_get_delete_round_trip(tmp_path: Path) -> None:
    photos = LocalPhotoStorage(tmp_path)
    key, _ = new_photo_keys()

    await photos.put(key, b"\xff\xd8jpeg bytes", "image/jpeg")
    assert await photos.get(key) == b"\xff\xd8jpeg bytes"
    assert _files(tmp_path) == [key]

    await photos.put(key, b"replaced", "image/jpeg")
    assert await photos.get(key) == b"replaced"

    await photos.delete(key)
    with pytest.raises(PhotoNotFound):
        await photos.get(key)
    await photos.delete(key)  # deleting again is fine
    assert _files(tmp_path) == []


async def test_local_missing_photo_is_not_found(tmp_path: Path) -> None:
    photos = LocalPhotoStorage(tmp_path)
    await photos.put("ab/cd/x.jpg", b"x", "image/jpeg")
    for key in ("ab/cd/missing.jpg", "ab/cd", "ab/cd/x.jpg/deeper"):
        with pytest.raises(PhotoNotFound) as caught:
            await photos.get(key)
        assert isinstance(caught.value, KeyError)


@pytest.mark.parametrize("key", ["../escape.jpg", "/etc/passwd", "ab/../../escape.jpg"])
async def test_local_rejects_traversal_before_touching_disk(tmp_path: Path, key: str) -> None:
    root = tmp_path / "media"
    photos = LocalPhotoStorage(root)
    with pytest.raises(InvalidPhotoKey):
        await photos.put(key, b"x", "image/jpeg")
    with pytest.raises(InvalidPhotoKey):
        await photos.get(key)
    with pytest.raises(InvalidPhotoKey):
        await photos.delete(key)
    with pytest.raises(InvalidPhotoKey):
        photos.url(key)
    assert _files(tmp_path) == []


async def test_local_write_leaves_no_temporary_files_and_is_readable(tmp_path: Path) -> None:
    photos = LocalPhotoStorage(tmp_path)
    keys = [new_photo_keys()[0] for _ in range(5)]
    for key in keys:
        await photos.put(key, key.encode(), "image/jpeg")
    assert _files(tmp_path) == sorted(keys)
    assert all((tmp_path / key).stat().st_mode & 0o777 == 0o644 for key in keys)


async def test_local_failed_write_keeps_the_old_photo_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = LocalPhotoStorage(tmp_path)
    await photos.put("ab/cd/x.jpg", b"old", "image/jpeg")

    def crash(src: str, dst: str) -> None:
        assert Path(src).read_bytes() == b"new"  # fully written before the rename
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    # The request is told the storage is unavailable (503); the cause stays for the log.
    with pytest.raises(StorageUnavailable) as failed:
        await photos.put("ab/cd/x.jpg", b"new", "image/jpeg")
    assert str(failed.value.__cause__) == "disk gone"
    monkeypatch.undo()

    assert await photos.get("ab/cd/x.jpg") == b"old"
    assert _files(tmp_path) == ["ab/cd/x.jpg"]


async def test_local_write_is_fsynced_before_it_is_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    await LocalPhotoStorage(tmp_path).put("ab/x.jpg", b"x", "image/jpeg")
    assert events == ["fsync", "replace", "fsync"]  # file, rename, then its directory


def test_local_url_is_none_unless_served_directly(tmp_path: Path) -> None:
    assert LocalPhotoStorage(tmp_path).url("ab/cd/x.jpg") is None
    served = LocalPhotoStorage(tmp_path, public_base_url="https://cdn.example.org/media/")
    assert served.url("ab/cd/x.jpg") == "https://cdn.example.org/media/ab/cd/x.jpg"


def test_original_keys_are_private_and_never_get_a_url(tmp_path: Path) -> None:
    key = new_original_key("png")
    assert re.fullmatch(r"originals/([0-9a-f]{2})/([0-9a-f]{2})/\1\2[0-9a-f]{28}\.png", key)
    assert validate_key(key) == key
    assert is_private_key(key)
    assert not any(is_private_key(k) for k in new_photo_keys())
    served = LocalPhotoStorage(tmp_path, public_base_url="https://cdn.example.org/media")
    s3 = S3PhotoStorage("b", client=FakeS3Client(), public_base_url="https://cdn.example.org")
    for backend in (LocalPhotoStorage(tmp_path), served, s3):
        with pytest.raises(InvalidPhotoKey, match="never served"):
            backend.url(key)


# --- S3 ---------------------------------------------------------------------------------------


class NoSuchKeyError(Exception):
    """Shaped like botocore's ClientError."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class FakeBody:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.closed = False

    def read(self) -> bytes:
        return self.data

    def close(self) -> None:
        self.closed = True


class FakeS3Client:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.bodies: list[FakeBody] = []
        self.fail_with: Exception | None = None

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:
        self.objects[Bucket, Key] = (Body, ContentType)

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        if self.fail_with is not None:
            raise self.fail_with
        if (Bucket, Key) not in self.objects:
            raise NoSuchKeyError("NoSuchKey")
        body = FakeBody(self.objects[Bucket, Key][0])
        self.bodies.append(body)
        return {"Body": body}

    def delete_object(self, *, Bucket: str, Key: str) -> None:
        self.objects.pop((Bucket, Key), None)


async def test_s3_put_get_delete_round_trip() -> None:
    client = FakeS3Client()
    photos = S3PhotoStorage("kerbside-photos", client=client)

    await photos.put("ab/cd/x.jpg", b"jpeg", "image/jpeg")
    assert client.objects == {("kerbside-photos", "ab/cd/x.jpg"): (b"jpeg", "image/jpeg")}
    assert await photos.get("ab/cd/x.jpg") == b"jpeg"
    assert all(body.closed for body in client.bodies)

    await photos.delete("ab/cd/x.jpg")
    with pytest.raises(PhotoNotFound):
        await photos.get("ab/cd/x.jpg")


async def test_s3_other_errors_are_not_hidden_as_not_found() -> None:
    client = FakeS3Client()
    client.fail_with = NoSuchKeyError("AccessDenied")
    with pytest.raises(NoSuchKeyError, match="AccessDenied"):
        await S3PhotoStorage("b", client=client).get("ab/x.jpg")


async def test_s3_rejects_unsafe_keys() -> None:
    client = FakeS3Client()
    photos = S3PhotoStorage("b", client=client, public_base_url="https://cdn.example.org")
    with pytest.raises(InvalidPhotoKey):
        await photos.put("../x.jpg", b"x", "image/jpeg")
    assert client.objects == {}
    assert photos.url("ab/x.jpg") == "https://cdn.example.org/ab/x.jpg"


# --- factory ----------------------------------------------------------------------------------


def test_make_storage_local(tmp_path: Path) -> None:
    photos = make_storage("local", local_root=tmp_path)
    assert isinstance(photos, LocalPhotoStorage)
    assert photos.root == tmp_path


def test_make_storage_s3_without_boto3_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` fail
    with pytest.raises(RuntimeError, match=re.escape("kerbside[s3]")):
        make_storage("s3", s3_bucket="kerbside-photos")


@pytest.mark.parametrize(
    ("backend", "kwargs"),
    [("local", {}), ("s3", {}), ("ftp", {"local_root": Path("/tmp")})],
)
def test_make_storage_rejects_incomplete_or_unknown_config(
    backend: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match=backend):
        make_storage(backend, **kwargs)

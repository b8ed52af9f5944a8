"""Where photo bytes live: a local directory or an S3-compatible bucket, behind one small interface.

Keys are random (``new_photo_keys``), so neither a key nor a URL built from it says anything
about who reported what. The ``content_type`` given to ``put`` is recorded only where the
backend serves files directly (S3). The app serves local files using the ``content_type``
kept on the ``Photo`` row.

Uploads wait for processing as they came, metadata and all, under ``originals/``
(``new_original_key``). Those keys are private: ``url()`` refuses them, the app never serves
them, and processing deletes them. A bucket that is readable through a CDN must keep that
prefix private (see docs/intake.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any, Protocol

from app.core.errors import RETRY_AFTER_SECONDS, ServiceUnavailable

log = logging.getLogger("kerbside.media")

MAX_KEY_LENGTH = 255  # Photo.storage_key is String(255)
# Where uploads wait, unprocessed, until their stripped copies are made. Never served.
ORIGINALS_PREFIX = "originals/"
# Each path segment starts with a letter or digit, so "", ".", "..", a leading "/" and hidden
# names are impossible. Temporary files start with "." and so can never clash with a key.
_KEY = re.compile(r"[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)*")
# Error codes for a missing object: NoSuchKey from GetObject, 404/NotFound from HeadObject.
_S3_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})


class StorageUnavailable(ServiceUnavailable):
    """The photo storage cannot be used now; nothing of the request was kept."""

    def __init__(self) -> None:
        super().__init__(
            "The photo storage is unavailable; nothing was saved, try again later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class PhotoNotFound(KeyError):
    """No photo is stored under this key."""


class InvalidPhotoKey(ValueError):
    """The key could escape the storage root or is not one we make."""


class PhotoStorage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes stored under ``key``. Raises ``PhotoNotFound`` if there are none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``. Does nothing if it is already gone."""
        ...

    def url(self, key: str) -> str | None:
        """A public URL for ``key`` if the backend serves files itself, else None (the app does).

        Raises ``InvalidPhotoKey`` for a private key (``originals/``).
        """
        ...


def new_photo_keys(extension: str = "jpg") -> tuple[str, str]:
    """Fresh random keys for a photo and its thumbnail, e.g. ``3f/a2/3fa2….jpg`` and ``…_t.jpg``.

    The two shard levels keep any one local directory to a few hundred files.
    """
    name = uuid.uuid4().hex
    stem = f"{name[:2]}/{name[2:4]}/{name}"
    return f"{stem}.{extension}", f"{stem}_t.{extension}"


def new_original_key(extension: str) -> str:
    """A fresh private key for an upload waiting to be processed, e.g. ``originals/3f/a2/….jpg``."""
    name = uuid.uuid4().hex
    return f"{ORIGINALS_PREFIX}{name[:2]}/{name[2:4]}/{name}.{extension}"


def is_private_key(key: str) -> bool:
    """True for keys that must never be served (unprocessed uploads)."""
    return key.startswith(ORIGINALS_PREFIX)


def public_key(key: str) -> str:
    """``key`` if it may be served; raises ``InvalidPhotoKey`` for unsafe or private keys."""
    if is_private_key(validate_key(key)):
        raise InvalidPhotoKey(f"Unprocessed uploads are never served: {key!r}")
    return key


def validate_key(key: str) -> str:
    """``key`` if it is safe to use as a relative path: ``[a-z0-9._-]`` segments joined by ``/``.

    Raises ``InvalidPhotoKey`` for anything else, including ``..``, absolute paths and
    backslashes.
    """
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise InvalidPhotoKey(f"Invalid photo key: {key!r}")
    return key


def make_storage(
    backend: str,
    *,
    local_root: Path | None = None,
    s3_bucket: str | None = None,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
    public_base_url: str | None = None,
) -> PhotoStorage:
    """The storage backend named by ``backend``: ``"local"`` (needs ``local_root``) or ``"s3"``
    (needs ``s3_bucket``, and boto3 installed via ``kerbside[s3]``).

    ``public_base_url`` is where the files can be fetched directly, e.g. a CDN in front of the
    bucket. Leave it unset to have the app serve them.
    """
    if backend == "local":
        if local_root is None:
            raise ValueError("local photo storage needs local_root")
        return LocalPhotoStorage(local_root, public_base_url=public_base_url)
    if backend == "s3":
        if not s3_bucket:
            raise ValueError("s3 photo storage needs s3_bucket")
        return S3PhotoStorage(
            s3_bucket,
            endpoint_url=s3_endpoint_url,
            region=s3_region,
            public_base_url=public_base_url,
        )
    raise ValueError(f"Unknown photo storage backend {backend!r}; expected 'local' or 's3'")


class LocalPhotoStorage:
    """Photos as files under ``root``, at the path given by their key.

    Writes are atomic and durable: the data goes to a temporary file in the same directory,
    which is fsynced and then renamed over the target, and then the directory is fsynced. A
    reader sees either the old file or the complete new one, and a crash never leaves a torn
    photo.
    """

    def __init__(self, root: Path, *, public_base_url: str | None = None) -> None:
        self.root = root
        self._public_base_url = public_base_url.rstrip("/") if public_base_url else None

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(_write_atomically, path, data)
        except OSError as exc:
            # Full disk, wrong permissions, a file where a directory should be: an operator's
            # problem, said plainly in the log; the client is asked to come back.
            log.error(
                "photo storage cannot write %s under %s: %s", key, self.root, exc.strerror or exc
            )
            raise StorageUnavailable() from exc

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise PhotoNotFound(key) from exc
        except OSError as exc:
            log.error("photo storage cannot read %s under %s: %s", key, self.root, exc.strerror)
            raise StorageUnavailable() from exc

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            await asyncio.to_thread(path.unlink)

    def url(self, key: str) -> str | None:
        public_key(key)
        return f"{self._public_base_url}/{key}" if self._public_base_url else None

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        # mkstemp makes the file 0600. Use the mode a plain open() gets under the usual umask.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename is only durable once the directory entry is on disk too.
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class S3PhotoStorage:
    """Photos in an S3-compatible bucket (AWS S3, MinIO, Garage, Cloudflare R2, …).

    Optional: it needs boto3, installed with ``pip install 'kerbside[s3]'``. Credentials come
    from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile or an
    instance role). boto3 is synchronous, so each call runs in a worker thread. boto3 clients
    are thread-safe.
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        public_base_url: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self._public_base_url = public_base_url.rstrip("/") if public_base_url else None
        # boto3 has no type stubs, so the client is typed loosely.
        self._client: Any = client if client is not None else _s3_client(endpoint_url, region)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        validate_key(key)
        await asyncio.to_thread(
            self._client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
        )

    async def get(self, key: str) -> bytes:
        validate_key(key)
        return await asyncio.to_thread(self._get, key)

    async def delete(self, key: str) -> None:
        validate_key(key)
        # DeleteObject succeeds for a missing key, so delete is idempotent, as it is locally.
        await asyncio.to_thread(self._client.delete_object, Bucket=self.bucket, Key=key)

    def url(self, key: str) -> str | None:
        public_key(key)
        return f"{self._public_base_url}/{key}" if self._public_base_url else None

    def _get(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            # botocore's ClientError carries the S3 error code. Only "missing" becomes ours.
            if _s3_error_code(exc) in _S3_NOT_FOUND:
                raise PhotoNotFound(key) from exc
            raise
        body = response["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data


def _s3_client(endpoint_url: str | None, region: str | None) -> Any:
    try:
        boto3 = importlib.import_module("boto3")
        botocore_config = importlib.import_module("botocore.config")
    except ImportError as exc:
        raise RuntimeError(
            "S3 photo storage needs boto3: install kerbside[s3] (pip install 'kerbside[s3]')"
        ) from exc
    config = botocore_config.Config(
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 3, "mode": "standard"},
        # Most self-hosted S3 servers (MinIO, Garage) only support path-style addressing.
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def _s3_error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    error = response.get("Error")
    code = error.get("Code") if isinstance(error, dict) else None
    return str(code) if code is not None else None

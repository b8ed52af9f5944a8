"""Read a ``multipart/form-data`` body into memory, part by part, with limits.

For requests whose files are read whole anyway (photos), this copies each byte once: the
received chunks are kept as they are and joined into the part's bytes at its end. Starlette's
form parser spools every file past 1 MiB to a temporary file (a thread hop and a disk write
per chunk) and then reads it back, which was most of the time it took to accept a 12 MP
photo. The body as a whole is capped by ``app.core.limits.BodySizeLimitMiddleware``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app.core.errors import BadRequest, InvalidInput


@dataclass
class Part:
    name: str
    filename: str | None  # None for a plain field
    content_type: str | None
    data: bytes = field(default=b"", repr=False)  # cut off past the part's limit
    size: int = 0  # as sent
    _chunks: list[memoryview] = field(default_factory=list, repr=False)
    _kept: int = 0

    @property
    def is_file(self) -> bool:
        return self.filename is not None


async def read_parts(
    request: Request,
    *,
    max_files: int,
    max_fields: int,
    max_file_bytes: int,
    max_field_bytes: int = 1024 * 1024,
) -> list[Part]:
    """The body's parts, in order. A file is kept up to ``max_file_bytes + 1`` bytes, so the
    caller can tell it was too large (``size`` says by how much); a plain field over
    ``max_field_bytes``, too many parts or a malformed body answer 400."""
    _, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("The multipart/form-data body has no boundary")
    parts: list[Part] = []
    headers: dict[bytes, bytes] = {}
    name, value = bytearray(), bytearray()
    counts = {"files": 0, "fields": 0}

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        name.extend(memoryview(data)[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.extend(memoryview(data)[start:end])

    def on_header_end() -> None:
        headers[bytes(name).lower()] = bytes(value)
        name.clear()
        value.clear()

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition"))
        if b"name" not in disposition:
            raise BadRequest("Every part needs a Content-Disposition with a name")
        filename = disposition.get(b"filename")
        if b"\x00" in disposition.get(b"name", b"") + (filename or b""):
            raise InvalidInput("A part's name and file name may not contain NUL characters")
        kind, limit = ("files", max_files) if filename is not None else ("fields", max_fields)
        counts[kind] += 1
        if counts[kind] > limit:
            raise BadRequest(f"Too many {kind}: at most {limit}")
        content_type = headers.get(b"content-type")
        parts.append(
            Part(
                name=disposition[b"name"].decode("utf-8", "replace"),
                filename=filename.decode("utf-8", "replace") if filename is not None else None,
                content_type=content_type.decode("latin-1") if content_type else None,
            )
        )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = parts[-1]
        part.size += end - start
        if not part.is_file and part.size > max_field_bytes:
            raise BadRequest(f"The part {part.name!r} is over {max_field_bytes // 1024} KiB")
        end = min(end, start + max_file_bytes + 1 - part._kept)
        if end > start:
            part._chunks.append(memoryview(data)[start:end])
            part._kept += end - start

    def on_part_end() -> None:
        part = parts[-1]
        part.data = b"".join(part._chunks)
        part._chunks.clear()
        # Text ends up in PostgreSQL, which holds no NUL (see app.core.limits); files are bytes.
        if not part.is_file and (b"\x00" in part.data or b"\\u0000" in part.data):
            raise InvalidInput(f"The part {part.name!r} may not contain NUL characters")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise BadRequest(f"The multipart/form-data body is malformed: {exc}") from None
    return parts

"""What the server refuses before any model work: request bodies over the upload limit or that
stop arriving (:class:`BodyLimit`, ASGI middleware), and uploads that are not a JPEG or PNG by
their file name or content type (:func:`check_upload_name`)."""

import asyncio
import json
from pathlib import PurePosixPath

from components.core.data.images import IMAGE_EXTENSIONS
from components.core.serving.inputs import InputError

IMAGE_CONTENT_TYPES = frozenset({"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "application/octet-stream"})


def media_type(content_type: str | None) -> str:
    """``"Image/PNG; q=1"`` -> ``"image/png"``; ``""`` when there is none."""
    return (content_type or "").split(";")[0].strip().lower()


def check_upload_name(filename: str | None, content_type: str | None) -> None:
    """Raise a 415 :class:`InputError` unless the upload's extension and content type (when
    given) are those of a JPEG or PNG, in any case."""
    suffix = PurePosixPath(filename or "").suffix.lower()
    if suffix and suffix not in IMAGE_EXTENSIONS:
        raise InputError(
            f"{filename!r}: unsupported file type {suffix!r}; upload a JPEG or PNG "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}, any case)",
            415,
        )
    media = media_type(content_type)
    if media and media not in IMAGE_CONTENT_TYPES:
        raise InputError(f"{filename!r}: content type {media!r} is not an image; upload a JPEG or PNG", 415)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, before they are read,
    and bodies that stop arriving for ``timeout_s`` with 408 (then close the connection).

    A declared Content-Length over the limit is answered at once; a chunked body is counted as
    it arrives and stopped at the limit. The timeout is per piece of body, not for the whole
    upload, so a slow but steady client is never cut off; a client that sends half a body and
    stalls does not hold its handler and connection open for ever."""

    def __init__(self, app, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def _message(self) -> str:
        return (
            f"request body is over the {self.max_bytes / 1024 / 1024:.1f} MiB upload limit "
            f"(set with --max-upload-mb or SKIN_CANCER_MAX_UPLOAD_MB)"
        )

    async def _refuse_too_large(self, send) -> None:
        body = json.dumps({"error": self._message()}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"connection", b"close"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse_too_large(send)
        seen, complete = 0, False

        async def limited():
            from starlette.exceptions import HTTPException

            nonlocal seen, complete
            if complete:  # after the body only a disconnect can come: no timeout on waiting for it
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"the request body stopped arriving (nothing for {self.timeout_s:g} s, "
                    f"{seen} bytes received); send it again",
                    {"Connection": "close"},
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > self.max_bytes:
                    raise HTTPException(413, self._message())
            else:
                complete = True
            return message

        return await self.app(scope, limited, send)

"""What this model accepts as a V2 input tensor, and the error every refusal raises.

KServe parses the Open Inference Protocol (JSON, the binary tensor data extension, gRPC) into
tensors; these functions check one tensor against what the classifier can take and turn it into
images: a ``BYTES`` tensor of JPEG/PNG files (shape ``[n]`` or ``[n, 1]``; in JSON each element
is base64, in binary data and gRPC the raw file), or a ``UINT8`` tensor of RGB pixels, shape
``[n, height, width, 3]``. Plain values in, plain values out: no HTTP, no KServe import.
"""

from __future__ import annotations

import base64
import binascii
import json

import numpy as np

from components.core.serving.config import ServingSettings

OUTPUTS = ("p_malignant", "label", "decision", "refer_reason")  # in the order answers give them


class InputError(ValueError):
    """The request is malformed; ``status`` is the HTTP code to answer with (gRPC answers
    INVALID_ARGUMENT for every one)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def check_tensor(name: str, datatype: str, shape: list[int], settings: ServingSettings) -> None:
    """Refuse, before any data is touched, a tensor this model cannot take: a datatype other than
    BYTES or UINT8, a shape of the wrong rank, no images, more images than the request limit, or
    images over the pixel limit (so a huge declared shape is refused before it is allocated)."""
    where = f"input {name!r}"
    if not isinstance(shape, (list, tuple)) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InputError(f"{where}: 'shape' must be a list of non-negative integers, got {shape!r}")
    if datatype == "BYTES":
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise InputError(f"{where}: a BYTES image tensor has shape [n] or [n, 1], got {list(shape)}")
    elif datatype == "UINT8":
        if len(shape) != 4 or shape[3] != 3:
            raise InputError(f"{where}: a UINT8 pixel tensor has shape [n, height, width, 3], got {list(shape)}")
        if shape[1] * shape[2] > settings.max_pixels:
            raise InputError(f"{where}: {shape[1]}x{shape[2]} pixels is over the {settings.max_pixels:,} limit")
    else:
        raise InputError(f"{where}: datatype {datatype!r} is not supported; use BYTES (image files) or UINT8 (pixels)")
    if not shape or shape[0] == 0:
        raise InputError(f"{where}: no images in the tensor")
    if shape[0] > settings.max_batch:
        raise InputError(
            f"{where}: {shape[0]} images is over the batch limit of {settings.max_batch} (set with --max-batch)", 413
        )


def image_files(name: str, values: np.ndarray) -> list[bytes]:
    """A BYTES tensor's elements as files: raw bytes as sent (binary data, gRPC), or base64 text
    (JSON cannot carry raw bytes), also as ``{"b64": ...}``."""
    files = []
    for j, item in enumerate(np.asarray(values, dtype=object).reshape(-1)):
        if isinstance(item, dict) and isinstance(item.get("b64"), str):
            item = item["b64"]
        if isinstance(item, (bytes, bytearray)):
            files.append(bytes(item))
            continue
        if not isinstance(item, str):
            raise InputError(f"input {name!r}: element {j} must be a base64 string (JSON cannot carry raw bytes)")
        try:
            files.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InputError(f"input {name!r}: element {j} is not valid base64") from None
    return files


def pixel_array(name: str, shape: list[int], data) -> np.ndarray:
    """A UINT8 tensor's values as a ``uint8`` array of ``shape``; values outside 0-255 and a
    count that does not fill the shape are refused, not wrapped or padded."""
    arr = np.asarray(data)
    if arr.dtype != np.uint8:
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"input {name!r}: UINT8 data must be integers 0-255")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InputError(f"input {name!r}: UINT8 values must be in 0-255")
        arr = arr.astype(np.uint8)
    count = int(np.prod(shape))
    if arr.size != count:
        raise InputError(f"input {name!r}: shape {list(shape)} needs {count} values, got {arr.size}")
    return arr.reshape(shape)


def check_outputs(names: list[str] | None) -> list[str]:
    """The outputs a request names, in its order (all, in :data:`OUTPUTS` order, when it names none)."""
    if not names:
        return list(OUTPUTS)
    unknown = sorted(set(names) - set(OUTPUTS))
    if unknown:
        raise InputError(f"unknown output(s) {unknown}; this model has {list(OUTPUTS)}")
    return list(names)


def split_binary_body(body: bytes, header_length: str) -> tuple[dict, list[bytes | None]]:
    """A V2 REST body with the binary tensor data extension, split by its
    ``Inference-Header-Content-Length``: (the JSON header, each input's raw bytes, or None for
    an input sent as JSON ``data``). The bytes are kept as sent: KServe's own split re-encodes
    BYTES elements as UTF-8 text, which no JPEG survives (see :mod:`.server`)."""
    try:
        n = int(header_length)
    except ValueError:
        raise InputError("Inference-Header-Content-Length must be an integer") from None
    if not 0 <= n <= len(body):
        raise InputError(f"Inference-Header-Content-Length {n} is outside the body ({len(body)} bytes)")
    try:
        header = json.loads(body[:n])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"the JSON header is not valid JSON: {err}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InputError("the JSON header must be an object with an 'inputs' list")
    raws: list[bytes | None] = []
    pos = n
    for i, tensor in enumerate(header["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise InputError(f"inputs[{i}] must be an object with name, shape and datatype")
        params = tensor.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            if "data" not in tensor:
                raise InputError(f"input {tensor['name']!r}: 'data' is missing (or binary_data_size)")
            raws.append(None)
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or pos + size > len(body):
            raise InputError(f"input {tensor['name']!r}: binary_data_size does not match the binary data sent")
        raws.append(body[pos : pos + size])
        pos += size
    return header, raws

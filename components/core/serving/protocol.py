"""KServe's Open Inference Protocol (V2) for this model, as plain functions: no HTTP, no model.

:func:`parse_infer_request` turns an infer request body (JSON, or JSON plus raw bytes with the
binary tensor data extension) into its input tensor; :func:`infer_response` turns the model's
results into the V2 answer. Anything malformed raises :class:`InputError`, which carries the
HTTP status to answer with.

The inputs this model takes: one ``BYTES`` tensor of JPEG/PNG files (shape ``[n]`` or
``[n, 1]``; each element base64 in JSON, or 4-byte little-endian length + bytes in binary data),
or one ``UINT8`` tensor of RGB pixels, shape ``[n, height, width, 3]``.
"""

import base64
import binascii
import json
import struct
from typing import NamedTuple

import numpy as np

from components.core.serving.config import ServingSettings


class InputError(ValueError):
    """The request is malformed; ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class InferInput(NamedTuple):
    """One parsed input tensor: ``values`` is a list of image files (BYTES) or a uint8 array (UINT8)."""

    name: str
    datatype: str
    shape: list[int]
    values: list[bytes] | np.ndarray


def _shape(tensor: dict, where: str) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise InputError(f"{where}: 'shape' must be a list of non-negative integers")
    return shape


def _flatten(data) -> list:
    """The leaves of nested lists in order (a non-list is one leaf); iterative, so deep nesting is safe."""
    if not isinstance(data, list):
        return [data]
    out: list = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _split_binary_bytes(raw: bytes, where: str) -> list[bytes]:
    """BYTES in the binary data extension: each element is a 4-byte little-endian length, then the bytes."""
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise InputError(f"{where}: binary BYTES data ends inside a length prefix")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise InputError(f"{where}: binary BYTES element is longer than the data sent")
        items.append(raw[pos : pos + n])
        pos += n
    return items


def _decode_b64_items(data, where: str) -> list[bytes]:
    items = []
    for j, item in enumerate(_flatten(data)):
        if isinstance(item, dict) and isinstance(item.get("b64"), str):
            item = item["b64"]
        if not isinstance(item, str):
            raise InputError(f"{where}: element {j} must be a base64 string (JSON cannot carry raw bytes)")
        try:
            items.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InputError(f"{where}: element {j} is not valid base64") from None
    return items


def _split_header(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary data) by the ``Inference-Header-Content-Length`` header, if sent."""
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        raise InputError("Inference-Header-Content-Length must be an integer") from None
    if not 0 <= n <= len(body):
        raise InputError(f"Inference-Header-Content-Length {n} is outside the body ({len(body)} bytes)")
    return body[:n], body[n:]


def _binary_part(tensor: dict, binary: bytes, where: str) -> bytes | None:
    """The tensor's raw bytes in the binary data (``None`` when it is sent as JSON ``data``)."""
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise InputError(f"{where}: 'parameters' must be an object")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise InputError(f"{where}: binary_data_size does not match the binary data sent")
        return binary[:size]
    if "data" not in tensor:
        raise InputError(f"{where}: 'data' is missing")
    return None


def _bytes_values(tensor: dict, shape: list[int], raw: bytes | None, where: str) -> list[bytes]:
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise InputError(f"{where}: a BYTES image tensor has shape [n] or [n, 1], got {shape}")
    return _split_binary_bytes(raw, where) if raw is not None else _decode_b64_items(tensor["data"], where)


def _uint8_values(tensor: dict, shape: list[int], raw: bytes | None, where: str, max_pixels: int) -> np.ndarray:
    if len(shape) != 4 or shape[3] != 3:
        raise InputError(f"{where}: a UINT8 pixel tensor has shape [n, height, width, 3], got {shape}")
    if shape[1] * shape[2] > max_pixels:
        raise InputError(f"{where}: {shape[1]}x{shape[2]} pixels is over the {max_pixels:,} limit")
    if raw is not None:
        arr = np.frombuffer(raw, dtype=np.uint8)
    else:
        flat = _flatten(tensor["data"])
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
            raise InputError(f"{where}: UINT8 data must be integers 0-255")
        arr = np.asarray(flat, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InputError(f"{where}: UINT8 values must be in 0-255")
        arr = arr.astype(np.uint8)
    count = int(np.prod(shape))
    if arr.size != count:
        raise InputError(f"{where}: shape {shape} needs {count} values, got {arr.size}")
    return arr.reshape(shape)


def _parse_tensor(i: int, tensor, binary: bytes, settings: ServingSettings) -> InferInput:
    if not isinstance(tensor, dict):
        raise InputError(f"inputs[{i}] must be an object with name, shape, datatype and data")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"inputs[{i}]: 'name' must be a non-empty string")
    where = f"input {name!r}"
    datatype = tensor.get("datatype")
    shape = _shape(tensor, where)
    raw = _binary_part(tensor, binary, where)
    if datatype == "BYTES":
        values = _bytes_values(tensor, shape, raw, where)
    elif datatype == "UINT8":
        values = _uint8_values(tensor, shape, raw, where, settings.max_pixels)
    else:
        raise InputError(f"{where}: datatype {datatype!r} is not supported; use BYTES (image files) "
                         "or UINT8 (pixels)")
    n = shape[0]
    if len(values) != n or (datatype == "BYTES" and len(values) != int(np.prod(shape))):
        raise InputError(f"{where}: shape {shape} does not match the {len(values)} element(s) sent")
    if n == 0:
        raise InputError(f"{where}: no images in the tensor")
    if n > settings.max_batch:
        raise InputError(f"{where}: {n} images is over the batch limit of {settings.max_batch}", 413)
    return InferInput(name, datatype, shape, values)


def parse_infer_request(body: bytes, header_length: str | None,
                        settings: ServingSettings) -> tuple[dict, list[InferInput]]:
    """The request's JSON object and its input tensors (this model takes exactly one).

    ``header_length`` is the ``Inference-Header-Content-Length`` header (binary tensor data
    extension), ``None`` when not sent; ``settings`` gives the pixel and batch limits.
    Raises :class:`InputError`."""
    header, binary = _split_header(body, header_length)
    try:
        request = json.loads(header)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"request body is not valid JSON: {err}") from None
    if not isinstance(request, dict):
        raise InputError("request body must be a JSON object with an 'inputs' list")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError("request must have a non-empty 'inputs' list")
    if len(inputs) != 1:
        raise InputError(f"send exactly one input tensor ('image' BYTES or 'pixels' UINT8), got {len(inputs)}")
    return request, [_parse_tensor(0, inputs[0], binary, settings)]


def _requested_outputs(request: dict, available: list[str]) -> list[str]:
    """The output names the request asks for (all, in order, when it names none)."""
    wanted = request.get("outputs")
    if wanted is None:
        return available
    if not isinstance(wanted, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                for o in wanted):
        raise InputError("'outputs' must be a list of objects with a 'name'")
    names = [o["name"] for o in wanted]
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise InputError(f"unknown output(s) {unknown}; this model has {sorted(available)}")
    return names


def infer_response(request: dict, results: list[dict], identity: dict, threshold: float) -> dict:
    """The V2 answer for ``results`` (one Predictor result per image): the outputs the request
    names (default ``p_malignant``, ``label``, ``decision``, ``refer_reason``; a BYTES tensor has
    no null, so a decided image's ``refer_reason`` is ""), ``identity`` (``model_name``,
    ``model_version``), the threshold, and the request's ``id`` if it sent one."""
    n = len(results)
    outputs = {
        "p_malignant": {"name": "p_malignant", "datatype": "FP32", "shape": [n], "data": [r["p_malignant"] for r in results]},
        "label": {"name": "label", "datatype": "BYTES", "shape": [n], "data": [r["label"] for r in results]},
        "decision": {"name": "decision", "datatype": "BYTES", "shape": [n], "data": [r["decision"] for r in results]},
        "refer_reason": {"name": "refer_reason", "datatype": "BYTES", "shape": [n],
                         "data": [r["refer_reason"] or "" for r in results]},
    }
    names = _requested_outputs(request, list(outputs))
    answer = {**identity, "outputs": [outputs[n] for n in names], "parameters": {"threshold": threshold}}
    if isinstance(request.get("id"), str):
        answer["id"] = request["id"]
    return answer

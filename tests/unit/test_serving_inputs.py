"""What the server accepts as a V2 input tensor (components/core/serving/inputs.py), as plain
functions: no HTTP, no model, no KServe. KServe parses the protocol; these are this model's rules.

Every expected value is worked out by hand in the test (base64 text, length prefixes, pixel
arrays), not by calling the code under test's own helpers."""

import json

import numpy as np
import pytest

from components.core.serving.config import ServingSettings
from components.core.serving.inputs import (
    OUTPUTS,
    InputError,
    check_outputs,
    check_tensor,
    image_files,
    pixel_array,
    split_binary_body,
)

# Explicit limits, so the tests do not depend on the environment.
LIMITS = ServingSettings(max_upload_bytes=1024, max_pixels=100, max_batch=2, body_timeout_s=1.0)


# --- well-formed tensors -------------------------------------------------------------------------


def test_bytes_elements_are_base64_text_or_raw_bytes():
    # "hi" = 0x68 0x69 -> 011010 000110 1001(00) -> "aGk="; "PNG!" -> "UE5H" + "IQ==".
    assert image_files("image", ["aGk=", "UE5HIQ=="]) == [b"hi", b"PNG!"]
    assert image_files("image", [[{"b64": "aGk="}], ["UE5HIQ=="]]) == [b"hi", b"PNG!"]  # shape [2, 1]
    raw = np.array([b"\xff\xd8 jpeg", b"\x89PNG"], dtype=object)  # binary data and gRPC: as sent
    assert image_files("image", raw) == [b"\xff\xd8 jpeg", b"\x89PNG"]


def test_uint8_values_become_the_exact_pixel_array():
    nested = [[[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 255]]]]  # as [1, 2, 2, 3]
    expected = np.array(nested, dtype=np.uint8)
    for data in (nested, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255], np.arange(12, dtype=np.uint8)):
        arr = pixel_array("pixels", [1, 2, 2, 3], data)
        assert arr.dtype == np.uint8 and arr.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(pixel_array("pixels", [1, 2, 2, 3], nested), expected)
    assert pixel_array("pixels", [1, 2, 2, 3], nested)[0, 0, 1].tolist() == [3, 4, 5]  # the top-right pixel


@pytest.mark.parametrize("datatype,shape", [("BYTES", [2]), ("BYTES", [2, 1]), ("UINT8", [2, 10, 10, 3])])
def test_tensors_within_the_limits_pass(datatype, shape):
    check_tensor("x", datatype, shape, LIMITS)


def test_outputs_default_to_all_and_keep_the_order_asked_for():
    assert (
        check_outputs(None)
        == check_outputs([])
        == list(OUTPUTS)
        == ["p_malignant", "label", "decision", "refer_reason"]
    )
    assert check_outputs(["decision", "p_malignant"]) == ["decision", "p_malignant"]


def test_binary_body_is_split_at_the_header_length_and_each_binary_data_size():
    header = json.dumps(
        {
            "id": "r-1",
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 13}},
                {"name": "extra", "datatype": "BYTES", "shape": [1], "data": ["aGk="]},
                {"name": "pixels", "datatype": "UINT8", "shape": [1, 1, 2, 3], "parameters": {"binary_data_size": 6}},
            ],
        }
    )
    # BYTES: two elements, each a 4-byte little-endian length then the bytes: 4 + 2 and 4 + 3 = 13 bytes.
    image = b"\x02\x00\x00\x00" + b"hi" + b"\x03\x00\x00\x00" + b"\xff\xd8\xff"
    pixels = bytes([10, 20, 30, 40, 50, 60])
    parsed, raws = split_binary_body(header.encode() + image + pixels, str(len(header)))
    assert parsed["id"] == "r-1" and [t["name"] for t in parsed["inputs"]] == ["image", "extra", "pixels"]
    assert raws == [image, None, pixels]  # kept as sent: \xff\xd8\xff is no UTF-8 text


# --- malformed tensors: InputError with the status and a message naming what is wrong ------------


@pytest.mark.parametrize(
    "datatype,shape,status,message",
    [
        ("FP32", [2], 400, "input 'x': datatype 'FP32' is not supported; use BYTES (image files) or UINT8 (pixels)"),
        ("BYTES", [3], 413, "input 'x': 3 images is over the batch limit of 2"),
        ("BYTES", "2", 400, "input 'x': 'shape' must be a list of non-negative integers"),
        ("BYTES", [True], 400, "input 'x': 'shape' must be a list of non-negative integers"),
        ("BYTES", [2, 2], 400, "input 'x': a BYTES image tensor has shape [n] or [n, 1], got [2, 2]"),
        ("BYTES", [0], 400, "input 'x': no images in the tensor"),
        ("UINT8", [1, 2, 2], 400, "input 'x': a UINT8 pixel tensor has shape [n, height, width, 3], got [1, 2, 2]"),
        ("UINT8", [1, 11, 10, 3], 400, "input 'x': 11x10 pixels is over the 100 limit"),
    ],
    ids=[
        "wrong-datatype",
        "too-many-images",
        "shape-not-list",
        "shape-bool",
        "bytes-rank",
        "empty",
        "uint8-shape",
        "uint8-pixels",
    ],
)
def test_tensors_this_model_cannot_take_are_refused_before_their_data(datatype, shape, status, message):
    with pytest.raises(InputError) as caught:
        check_tensor("x", datatype, shape, LIMITS)
    assert caught.value.status == status
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: image_files("image", ["aGk=", "%%%not base64"]), "input 'image': element 1 is not valid base64"),
        (lambda: image_files("image", ["aGk=", 7]), "input 'image': element 1 must be a base64 string"),
        (lambda: pixel_array("p", [1, 1, 1, 3], [0, 256, 0]), "input 'p': UINT8 values must be in 0-255"),
        (lambda: pixel_array("p", [1, 1, 1, 3], [0, -1, 0]), "input 'p': UINT8 values must be in 0-255"),
        (lambda: pixel_array("p", [1, 1, 1, 3], [0, 0.5, 0]), "input 'p': UINT8 data must be integers 0-255"),
        (lambda: pixel_array("p", [1, 2, 2, 3], [0] * 11), "input 'p': shape [1, 2, 2, 3] needs 12 values, got 11"),
        (lambda: check_outputs(["decision", "logits"]), "unknown output(s) ['logits']"),
    ],
    ids=["bad-base64", "not-a-string", "uint8-over", "uint8-negative", "uint8-float", "uint8-count", "unknown-output"],
)
def test_malformed_values_raise_input_error(call, message):
    with pytest.raises(InputError) as caught:
        call()
    assert caught.value.status == 400
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(
    "body,header_length,message",
    [
        (b"{}", "99", "Inference-Header-Content-Length 99 is outside the body (2 bytes)"),
        (b"{}", "two", "Inference-Header-Content-Length must be an integer"),
        (b'{"inputs": [', "12", "the JSON header is not valid JSON"),
        (b"[1, 2]", "6", "the JSON header must be an object with an 'inputs' list"),
        (b'{"inputs": [{"name": "image", "shape": [1]}]}', "45", "input 'image': 'data' is missing"),
        (
            b'{"inputs": [{"name": "i", "parameters": {"binary_data_size": 7}}]}\x02\x00\x00\x00hi',
            "66",
            "input 'i': binary_data_size does not match the binary data sent",
        ),  # 7 > the 6 sent
    ],
    ids=["header-beyond-body", "header-not-integer", "not-json", "not-an-object", "no-data", "size-beyond-body"],
)
def test_malformed_binary_bodies(body, header_length, message):
    with pytest.raises(InputError) as caught:
        split_binary_body(body, header_length)
    assert caught.value.status == 400
    assert str(caught.value).startswith(message), str(caught.value)

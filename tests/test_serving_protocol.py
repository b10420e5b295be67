"""The Open Inference Protocol (V2) as plain functions: no HTTP, no model.

Every expected value is worked out by hand in the test (base64 text, length prefixes, pixel
arrays, the answer's JSON), not by calling the code under test's own helpers."""

import json

import numpy as np
import pytest

from components.core.serving.config import ServingSettings
from components.core.serving.protocol import InputError, infer_response, parse_infer_request

# Explicit limits, so the tests do not depend on the environment.
LIMITS = ServingSettings(max_upload_bytes=1024, max_pixels=100, max_batch=2, body_timeout_s=1.0)


def body(*tensors: dict, **extra) -> bytes:
    return json.dumps({"inputs": list(tensors), **extra}).encode()


# --- well-formed requests ------------------------------------------------------------------------


def test_json_bytes_tensor_decodes_each_base64_item():
    # "hi" = 0x68 0x69 -> 011010 000110 1001(00) -> "aGk="; "PNG!" -> "UE5H" + "IQ==".
    request, inputs = parse_infer_request(
        body({"name": "image", "datatype": "BYTES", "shape": [2], "data": ["aGk=", "UE5HIQ=="]}, id="r-1"),
        None, LIMITS)
    assert request["id"] == "r-1"
    assert len(inputs) == 1
    name, datatype, shape, values = inputs[0]
    assert (name, datatype, shape) == ("image", "BYTES", [2])
    assert values == [b"hi", b"PNG!"]


def test_json_bytes_tensor_of_shape_n_by_1_and_b64_objects():
    _, inputs = parse_infer_request(
        body({"name": "image", "datatype": "BYTES", "shape": [2, 1], "data": [[{"b64": "aGk="}], ["UE5HIQ=="]]}),
        None, LIMITS)
    assert inputs[0].values == [b"hi", b"PNG!"]


def test_binary_tensor_data_is_split_at_the_header_length_and_the_length_prefixes():
    header = (b'{"inputs":[{"name":"image","datatype":"BYTES","shape":[2],'
              b'"parameters":{"binary_data_size":13}}]}')
    # Two elements, each a 4-byte little-endian length then the bytes: 4 + 2 and 4 + 3 = 13 bytes.
    binary = b"\x02\x00\x00\x00" + b"hi" + b"\x03\x00\x00\x00" + b"abc"
    assert len(binary) == 13
    request, inputs = parse_infer_request(header + binary, str(len(header)), LIMITS)
    assert request == {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                                   "parameters": {"binary_data_size": 13}}]}
    assert inputs[0].values == [b"hi", b"abc"]


def test_uint8_tensor_becomes_the_exact_pixel_array():
    data = [[[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 255]]]]  # nested as [1, 2, 2, 3]
    _, inputs = parse_infer_request(
        body({"name": "pixels", "datatype": "UINT8", "shape": [1, 2, 2, 3], "data": data}), None, LIMITS)
    values = inputs[0].values
    assert values.dtype == np.uint8 and values.shape == (1, 2, 2, 3)
    expected = np.array([[[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 255]]]], dtype=np.uint8)
    np.testing.assert_array_equal(values, expected)
    # The same pixels sent flat give the same array; the top-right pixel is (3, 4, 5).
    _, flat = parse_infer_request(body({"name": "pixels", "datatype": "UINT8", "shape": [1, 2, 2, 3],
                                        "data": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255]}), None, LIMITS)
    np.testing.assert_array_equal(flat[0].values, expected)
    assert flat[0].values[0, 0, 1].tolist() == [3, 4, 5]


def test_uint8_tensor_in_binary_data():
    header = (b'{"inputs":[{"name":"pixels","datatype":"UINT8","shape":[1,1,2,3],'
              b'"parameters":{"binary_data_size":6}}]}')
    _, inputs = parse_infer_request(header + bytes([10, 20, 30, 40, 50, 60]), str(len(header)), LIMITS)
    np.testing.assert_array_equal(inputs[0].values, np.array([[[[10, 20, 30], [40, 50, 60]]]], dtype=np.uint8))


# --- malformed requests: InputError with the status and a message naming what is wrong -----------

B64 = {"name": "image", "datatype": "BYTES", "shape": [2], "data": ["aGk=", "UE5HIQ=="]}


@pytest.mark.parametrize("raw,header_length,status,message", [
    (body({**B64, "datatype": "FP32"}), None, 400,
     "input 'image': datatype 'FP32' is not supported; use BYTES (image files) or UINT8 (pixels)"),
    (body({**B64, "shape": [3]}), None, 400, "input 'image': shape [3] does not match the 2 element(s) sent"),
    (body({"name": "pixels", "datatype": "UINT8", "shape": [1, 2, 2, 3], "data": [0] * 11}), None, 400,
     "input 'pixels': shape [1, 2, 2, 3] needs 12 values, got 11"),
    (body({**B64, "shape": [3], "data": ["aGk="] * 3}), None, 413,
     "input 'image': 3 images is over the batch limit of 2"),
    (body({**B64, "data": ["aGk=", "%%%not base64"]}), None, 400, "input 'image': element 1 is not valid base64"),
    (body({**B64, "data": ["aGk=", 7]}), None, 400, "input 'image': element 1 must be a base64 string"),
    (b"{}", "99", 400, "Inference-Header-Content-Length 99 is outside the body (2 bytes)"),
    (b"{}", "two", 400, "Inference-Header-Content-Length must be an integer"),
    (b'{"inputs": [', None, 400, "request body is not valid JSON"),
    (b"[1, 2]", None, 400, "request body must be a JSON object with an 'inputs' list"),
    (body(B64, B64), None, 400, "send exactly one input tensor ('image' BYTES or 'pixels' UINT8), got 2"),
    (body({**B64, "shape": "2"}), None, 400, "input 'image': 'shape' must be a list of non-negative integers"),
    (body({"name": "image", "datatype": "BYTES", "shape": [1]}), None, 400, "input 'image': 'data' is missing"),
    (body({**B64, "shape": [0], "data": []}), None, 400, "input 'image': no images in the tensor"),
    (body({"name": "p", "datatype": "UINT8", "shape": [1, 1, 1, 3], "data": [0, 256, 0]}), None, 400,
     "input 'p': UINT8 values must be in 0-255"),
    (body({"name": "p", "datatype": "UINT8", "shape": [1, 2, 2], "data": [0, 1, 2, 3]}), None, 400,
     "input 'p': a UINT8 pixel tensor has shape [n, height, width, 3], got [1, 2, 2]"),
    (body({"name": "p", "datatype": "UINT8", "shape": [1, 11, 10, 3], "data": [0]}), None, 400,
     "input 'p': 11x10 pixels is over the 100 limit"),
], ids=["wrong-datatype", "shape-data-mismatch", "uint8-count", "too-many-images", "bad-base64", "not-a-string",
        "header-beyond-body", "header-not-integer", "not-json", "not-an-object", "two-inputs", "bad-shape", "no-data",
        "empty", "uint8-range", "uint8-shape", "uint8-pixels"])
def test_malformed_requests_raise_input_error(raw, header_length, status, message):
    with pytest.raises(InputError) as caught:
        parse_infer_request(raw, header_length, LIMITS)
    assert caught.value.status == status
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize("binary,size,message", [
    (b"\x05\x00\x00\x00abc", 7, "binary BYTES element is longer than the data sent"),  # says 5, sends 3
    (b"\x02\x00\x00\x00hi\x01\x00", 8, "binary BYTES data ends inside a length prefix"),  # 2 of 4 prefix bytes
    (b"\x02\x00\x00\x00hi", 7, "binary_data_size does not match the binary data sent"),  # 7 > the 6 sent
])
def test_malformed_binary_data(binary, size, message):
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": size}}]}).encode()
    with pytest.raises(InputError, match=message) as caught:
        parse_infer_request(header + binary, str(len(header)), LIMITS)
    assert caught.value.status == 400


# --- the answer ----------------------------------------------------------------------------------

RESULTS = [{"label": "benign", "p_malignant": 0.25, "decision": "benign", "refer_reason": None},
           {"label": "malignant", "p_malignant": 0.75, "decision": "refer", "refer_reason": "uncertain"}]
IDENTITY = {"model_name": "skin-cancer-classifier", "model_version": "7"}


def test_infer_response_is_the_exact_v2_answer():
    answer = infer_response({"id": "req-9", "inputs": []}, RESULTS, IDENTITY, 0.5)
    assert answer == {
        "model_name": "skin-cancer-classifier",
        "model_version": "7",
        "id": "req-9",
        "outputs": [
            {"name": "p_malignant", "datatype": "FP32", "shape": [2], "data": [0.25, 0.75]},
            {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["benign", "malignant"]},
            {"name": "decision", "datatype": "BYTES", "shape": [2], "data": ["benign", "refer"]},
            # a BYTES tensor has no null: a decided image's reason is ""
            {"name": "refer_reason", "datatype": "BYTES", "shape": [2], "data": ["", "uncertain"]},
        ],
        "parameters": {"threshold": 0.5},
    }
    assert json.loads(json.dumps(answer)) == answer  # plain JSON


def test_infer_response_gives_the_outputs_asked_for_in_their_order():
    answer = infer_response({"outputs": [{"name": "label"}, {"name": "p_malignant"}]}, RESULTS, IDENTITY, 0.5)
    assert "id" not in answer
    assert answer["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["benign", "malignant"]},
        {"name": "p_malignant", "datatype": "FP32", "shape": [2], "data": [0.25, 0.75]},
    ]


@pytest.mark.parametrize("outputs,message", [
    ([{"name": "logits"}], "unknown output(s) ['logits']; this model has ['decision', 'label', 'p_malignant', 'refer_reason']"),
    ("label", "'outputs' must be a list of objects with a 'name'"),
])
def test_infer_response_refuses_bad_output_requests(outputs, message):
    with pytest.raises(InputError) as caught:
        infer_response({"outputs": outputs}, RESULTS, IDENTITY, 0.5)
    assert caught.value.status == 400 and str(caught.value) == message

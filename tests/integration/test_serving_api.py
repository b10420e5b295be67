"""The inference server over real HTTP: `skin-cancer serve` on 127.0.0.1 with a small trained model.

Covers the V2 protocol, /predict, Grad-CAM, every kind of bad input (each a 4xx with a clear
message, the server still serving afterwards), many parallel requests, the champion from the
MLflow registry, and the smoke test (its KFP component run against this server)."""

import io
import json
import socket
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image

from components.core.data.dataset import CLASSES
from tests.support.serving_helpers import (
    INFER,
    MAX_UPLOAD_MB,
    MODEL_NAME,
    MODEL_VERSION,
    kserve_v2_datamodels,
    metric_total,
    metrics_of,
    outputs,
    post_file,
    shared_bad_uploads,
    v2_bytes,
)

# The model and server fixtures (tests/support/serving_fixtures.py): one server per worker.
pytest_plugins = ["tests.support.serving_fixtures"]


# --- the protocol -----------------------------------------------------------------------------


def test_health_and_metadata(server):
    """KServe's V2 answers, each valid against KServe's own data models."""
    dm = kserve_v2_datamodels()

    def get(path, model=None, status=200):
        r = requests.get(server.url + path, timeout=10)
        assert r.status_code == status, (path, r.status_code, r.text)
        if model is not None:
            model.model_validate(r.json())
        return r.json()

    assert get("/v2/health/live", dm.ServerLiveResponse) == {"live": True}
    assert get("/v2/health/ready", dm.ServerReadyResponse) == {"ready": True}
    get("/v2", dm.ServerMetadataResponse)
    assert get("/v2/models", dm.ListModelsResponse) == {"models": [MODEL_NAME]}
    meta = get(f"/v2/models/{MODEL_NAME}", dm.ModelMetadataResponse)
    assert meta["name"] == MODEL_NAME and meta["versions"] == [MODEL_VERSION]
    assert {i["datatype"] for i in meta["inputs"]} == {"BYTES", "UINT8"}
    assert {(o["name"], o["datatype"]) for o in meta["outputs"]} == {
        ("p_malignant", "FP32"),
        ("label", "BYTES"),
        ("decision", "BYTES"),
        ("refer_reason", "BYTES"),
    }
    assert get(f"/v2/models/{MODEL_NAME}/versions/{MODEL_VERSION}", dm.ModelMetadataResponse) == meta
    assert get(f"/v2/models/{MODEL_NAME}/ready", dm.ModelReadyResponse)["ready"] is True
    assert get(f"/v2/models/{MODEL_NAME}/versions/{MODEL_VERSION}/ready", dm.ModelReadyResponse)["ready"] is True
    assert "other-model does not exist" in get("/v2/models/other-model", status=404)["error"]
    assert "version 99" in get(f"/v2/models/{MODEL_NAME}/versions/99", status=404)["error"]


def test_predict_answers_label_probability_and_model(server, images, reference):
    for cls in CLASSES:
        for path in images[cls][:2]:
            data = path.read_bytes()
            r = post_file(server.url, data, filename=path.name)
            assert r.status_code == 200, r.text
            body = r.json()
            assert {"label", "p_malignant", "model_name", "model_version"} <= set(body)
            expected = reference.predict_bytes(data)
            assert body["p_malignant"] == pytest.approx(expected["p_malignant"], abs=1e-5)
            assert body["label"] == expected["label"] == CLASSES[int(body["p_malignant"] >= body["threshold"])]
            assert (body["model_name"], body["model_version"]) == (MODEL_NAME, MODEL_VERSION)


@pytest.mark.parametrize(
    "filename,fmt", [("A.JPG", "JPEG"), ("b.Jpeg", "JPEG"), ("c.PNG", "PNG"), ("d.png", "PNG"), ("no-extension", "PNG")]
)
def test_any_case_of_extension(server, images, reference, filename, fmt):
    pixels = np.asarray(Image.open(images["malignant"][0]).convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    media = "image/png" if fmt == "PNG" else "image/jpeg"
    r = post_file(server.url, buf.getvalue(), filename=filename, content_type=media)
    assert r.status_code == 200, r.text
    assert r.json()["p_malignant"] == pytest.approx(reference.predict_bytes(buf.getvalue())["p_malignant"], abs=1e-5)


def test_v2_bytes_pixels_and_binary_agree(server, images, reference):
    blobs = [images["benign"][0].read_bytes(), images["malignant"][0].read_bytes()]
    answer_model = kserve_v2_datamodels().InferenceResponse
    r = requests.post(server.url + INFER, json=v2_bytes(*blobs, id="req-1"), timeout=60)
    assert r.status_code == 200, r.text
    answer = r.json()
    answer_model.model_validate(answer)
    assert answer["id"] == "req-1" and answer["model_name"] == MODEL_NAME and answer["model_version"] == MODEL_VERSION
    out = outputs(answer)
    assert out["p_malignant"]["datatype"] == "FP32" and out["p_malignant"]["shape"] == [2]
    assert out["label"]["datatype"] == "BYTES" and out["label"]["shape"] == [2]
    expected = [reference.predict_bytes(b) for b in blobs]
    assert out["p_malignant"]["data"] == pytest.approx([e["p_malignant"] for e in expected], abs=1e-5)
    assert out["label"]["data"] == [e["label"] for e in expected]
    threshold = answer["parameters"]["threshold"]
    assert threshold == pytest.approx(reference.threshold)

    # UINT8 pixels: the decoded image gives the same probability as the file.
    from components.core.data.images import decode_image

    pixels = np.stack([decode_image(b, reference.image_size) for b in blobs])
    r = requests.post(
        server.url + INFER,
        timeout=60,
        json={
            "inputs": [
                {"name": "pixels", "datatype": "UINT8", "shape": list(pixels.shape), "data": pixels.ravel().tolist()}
            ]
        },
    )
    assert r.status_code == 200, r.text
    answer_model.model_validate(r.json())
    assert r.json()["id"]  # KServe gives one when the request sends none
    assert outputs(r.json())["p_malignant"]["data"] == pytest.approx(out["p_malignant"]["data"], abs=1e-5)

    # The binary tensor data extension: raw JPEG bytes after the JSON header.
    raw = b"".join(struct.pack("<I", len(b)) + b for b in blobs)
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(raw)}}
            ],
            "outputs": [{"name": "p_malignant"}],
        }
    ).encode()
    r = requests.post(
        server.url + INFER,
        data=header + raw,
        timeout=60,
        headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 200, r.text
    answer_model.model_validate(r.json())
    assert [o["name"] for o in r.json()["outputs"]] == ["p_malignant"]
    assert r.json()["outputs"][0]["data"] == pytest.approx(out["p_malignant"]["data"], abs=1e-5)

    # The version path answers too.
    r = requests.post(
        f"{server.url}/v2/models/{MODEL_NAME}/versions/{MODEL_VERSION}/infer", json=v2_bytes(blobs[0]), timeout=60
    )
    assert r.status_code == 200
    answer_model.model_validate(r.json())


def test_explain_returns_a_heatmap_png(server, images, reference):
    from components.core.data.images import decode_image
    from components.core.modeling.models import without_tta

    data = images["malignant"][0].read_bytes()
    r = post_file(server.url, data, path="/explain")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-grad-cam-layer"] == "block4_relu2"
    picture = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert picture.shape == (320, 320, 3)
    # One probability per image: /explain reports what /predict answers (the flip-averaged p),
    # not the single view the heatmap explains (which differs for this model).
    served = post_file(server.url, data).json()["p_malignant"]
    assert float(r.headers["x-p-malignant"]) == pytest.approx(served, abs=2e-6)
    pixels = decode_image(data, reference.image_size)
    single_view = float(np.asarray(without_tta(reference.model)(pixels[None], training=False)).ravel()[0])
    assert abs(single_view - served) > 1e-6


def test_page_is_served(server):
    r = requests.get(server.url + "/", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "not a diagnosis" in r.text and 'id="heatmap"' in r.text


# --- bad input: a 4xx with a clear message, and the server keeps serving -----------------------


def _bad_cases(images) -> list:
    good = images["malignant"][0].read_bytes()
    big = int(MAX_UPLOAD_MB * 1024 * 1024) + 1000
    # (id, path, requests kwargs, status, message fragment)
    return shared_bad_uploads(good) + [
        ("empty-file", "/predict", dict(files={"file": ("x.jpg", b"", "image/jpeg")}), 400, "empty file"),
        (
            "oversized-chunked",
            "/predict",
            dict(
                data=iter(
                    [
                        b'--zz\r\nContent-Disposition: form-data; name="file"; '
                        b'filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
                    ]
                    + [b"x" * 65536] * (big // 65536 + 2)
                ),
                headers={"Content-Type": "multipart/form-data; boundary=zz"},
            ),
            413,
            "upload limit",
        ),
        ("gif", "/predict", dict(files={"file": ("x.png", _gif(), "image/png")}), 400, "unsupported image format"),
        (
            "txt-extension",
            "/predict",
            dict(files={"file": ("notes.txt", good, "text/plain")}),
            415,
            "unsupported file type",
        ),
        ("missing-field", "/predict", dict(files={"image": ("x.jpg", good, "image/jpeg")}), 400, "field 'file'"),
        ("field-not-file", "/predict", dict(data={"file": "hello"}, files={"other": ("a", b"b")}), 400, "file upload"),
        (
            "v2-not-json",
            INFER,
            dict(data=b"{not json", headers={"Content-Type": "application/json"}),
            400,
            "not valid JSON",
        ),
        ("v2-multipart", INFER, dict(files={"file": ("x.jpg", good, "image/jpeg")}), 415, "application/json"),
        ("v2-array", INFER, dict(json=[1, 2]), 400, "JSON object"),
        ("v2-no-inputs", INFER, dict(json={"id": "x"}), 400, "inputs: Field required"),
        ("v2-two-inputs", INFER, dict(json={"inputs": [v2_bytes(good)["inputs"][0]] * 2}), 400, "exactly one input"),
        (
            "v2-fp32",
            INFER,
            dict(json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [0.5]}]}),
            400,
            "not supported",
        ),
        (
            "v2-shape-mismatch",
            INFER,
            dict(json={"inputs": [{**v2_bytes(good, good)["inputs"][0], "shape": [3]}]}),
            400,
            "does not match",
        ),
        ("v2-bad-shape", INFER, dict(json={"inputs": [{**v2_bytes(good)["inputs"][0], "shape": "1"}]}), 400, "shape"),
        ("v2-bytes-not-image", INFER, dict(json=v2_bytes(b"plain text")), 400, "not an image"),
        (
            "v2-no-data",
            INFER,
            dict(json={"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}),
            400,
            "data: Field required",
        ),
        (
            "v2-uint8-range",
            INFER,
            dict(json={"inputs": [{"name": "p", "datatype": "UINT8", "shape": [1, 1, 1, 3], "data": [0, 300, 2]}]}),
            400,
            "0-255",
        ),
        (
            "v2-uint8-shape",
            INFER,
            dict(json={"inputs": [{"name": "p", "datatype": "UINT8", "shape": [1, 2, 2], "data": [0, 1, 2, 3]}]}),
            400,
            "[n, height, width, 3]",
        ),
        (
            "v2-uint8-too-big",
            INFER,
            dict(json={"inputs": [{"name": "p", "datatype": "UINT8", "shape": [1, 5000, 5000, 3], "data": [0]}]}),
            400,
            "pixels is over",
        ),
        (
            "v2-batch-limit",
            INFER,
            dict(json={"inputs": [{"name": "p", "datatype": "UINT8", "shape": [33, 1, 1, 3], "data": [0] * 99}]}),
            413,
            "batch limit",
        ),
        ("v2-unknown-output", INFER, dict(json=v2_bytes(good, outputs=[{"name": "logits"}])), 400, "unknown output"),
        ("v2-wrong-model", "/v2/models/resnet/infer", dict(json=v2_bytes(good)), 404, "resnet does not exist"),
        (
            "v2-wrong-version",
            f"/v2/models/{MODEL_NAME}/versions/99/infer",
            dict(json=v2_bytes(good)),
            404,
            "version 99",
        ),
        (
            "v2-binary-missing-data",
            INFER,
            dict(
                data=b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}',
                headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "66"},
            ),
            400,
            "'data' is missing",
        ),
        (
            "v2-bad-binary-header",
            INFER,
            dict(
                data=b"{}",
                headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "99"},
            ),
            400,
            "outside the body",
        ),
        (
            "v2-binary-bad-length-prefix",
            INFER,
            dict(
                data=b'{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":8}}]}'
                + b"\x09\x00\x00\x00abcd",  # says 9 bytes, sends 4
                headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "96"},
            ),
            400,
            "does not match the data sent",
        ),
        ("unknown-path", "/v3/nothing", dict(json={}), 404, "Not Found"),
    ]


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    return buf.getvalue()


def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(server, images):
    good = images["malignant"][0].read_bytes()
    before = post_file(server.url, good).json()
    failures = []
    for case_id, path, kwargs, status, fragment in _bad_cases(images):
        try:
            r = requests.post(server.url + path, timeout=60, **kwargs)
        except requests.ConnectionError as err:
            failures.append(f"{case_id}: connection error {err}")
            continue
        message = r.json().get("error", "") if r.headers.get("content-type", "").startswith("application/json") else ""
        if r.status_code != status or fragment.lower() not in message.lower():
            failures.append(f"{case_id}: HTTP {r.status_code} {r.text[:200]!r}, expected {status} with {fragment!r}")
        # After every bad request the server still answers a good one, identically.
        after = post_file(server.url, good)
        if after.status_code != 200 or after.json() != before:
            failures.append(f"{case_id}: server answered {after.status_code} {after.text[:200]} afterwards")
    assert server.proc.poll() is None
    assert not failures, "\n".join(failures)


def test_client_that_hangs_up_does_not_hurt(server, images):
    """A client that disconnects in the middle of an upload."""
    good = images["benign"][0].read_bytes()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b'Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name="file"; '
            b'filename="a.jpg"\r\n\r\n' + good[:100]
        )
    assert post_file(server.url, good).status_code == 200


# --- many clients at once ---------------------------------------------------------------------


def test_many_parallel_requests_are_all_answered_correctly(server, images, reference):
    files = images["benign"][:4] + images["malignant"][:4]
    expected = {str(p): reference.predict_bytes(p.read_bytes()) for p in files}

    def one(i: int):
        path = files[i % len(files)]
        data = path.read_bytes()
        if i % 2:
            r = requests.post(server.url + INFER, json=v2_bytes(data, id=str(i)), timeout=120)
            r.raise_for_status()
            out = outputs(r.json())
            assert r.json()["id"] == str(i)
            return str(path), out["p_malignant"]["data"][0], out["label"]["data"][0]
        r = post_file(server.url, data, filename=path.name)
        r.raise_for_status()
        return str(path), r.json()["p_malignant"], r.json()["label"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one, range(96)))
    assert len(answers) == 96
    for name, p, label in answers:
        assert p == pytest.approx(expected[name]["p_malignant"], abs=1e-5), name
        assert label == expected[name]["label"], name


# --- the Model artifact in S3, as KFP stores it on a cluster -------------------------------------


def test_predictor_loads_a_model_artifact_from_s3(tiny_model_dir, s3_bucket, images, reference):
    from components.core.inference.predictor import Predictor
    from tests.support.s3 import upload_tree

    uri = upload_tree(tiny_model_dir, s3_bucket, "pipeline-root/run-1/train/model")
    # KFP's own store is not read as if it were the project's S3 (another endpoint, other keys).
    with pytest.raises(ValueError, match="a Model artifact in Kubeflow Pipelines' own store"):
        Predictor.load(uri.replace("s3://", "minio://"))
    loaded = Predictor.load(uri)
    data = images["benign"][0].read_bytes()
    assert loaded.threshold == reference.threshold and loaded.image_size == reference.image_size
    assert loaded.predict_bytes(data)["p_malignant"] == pytest.approx(
        reference.predict_bytes(data)["p_malignant"], abs=1e-6
    )


# --- the decision policy: every consumer decides the same way (issue 26) ------------------------


def test_every_consumer_gives_the_same_decision_for_the_same_image(server, images, reference, tiny_model_dir, tmp_path):
    """The predictor in this process, `skin-cancer predict`, /predict, V2 (BYTES) and the smoke
    test's check all carry one decision per image, the same one: lesion images, a photograph of a
    palace and a flat grey frame."""
    import subprocess
    import sys

    from components.core.deploy import smoke
    from tests.support.drawn_images import package_photographs

    files = {p.name: p.read_bytes() for p in (*images["benign"][:2], *images["malignant"][:2])}
    files["china.jpg"] = package_photographs()["china.jpg"]
    files["grey.png"] = smoke.out_of_scope_probe()
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    keys = ("decision", "refer_reason", "prediction_set")
    direct = [reference.predict_bytes(data) for data in files.values()]
    cli = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "predict", "--model-uri", str(tiny_model_dir), *paths],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    lines = [json.loads(line) for line in cli.stdout.splitlines()]
    assert [set(line) for line in lines] == [{"image", "label", "p_malignant", *keys, "ood_score"}] * len(files)
    uploads = [
        post_file(
            server.url, data, filename=name, content_type="image/png" if name.endswith(".png") else "image/jpeg"
        ).json()
        for name, data in files.items()
    ]
    answer = requests.post(server.url + INFER, json=v2_bytes(*files.values()), timeout=60).json()
    _, labels, _, pairs = smoke.check_answer(answer, len(files), MODEL_NAME)
    for i, name in enumerate(files):
        want = tuple(direct[i][k] for k in keys)
        assert tuple(lines[i][k] for k in keys) == want, name
        assert tuple(uploads[i][k] for k in keys) == want, name
        assert pairs[i] == (want[0], want[1] or ""), name
        assert lines[i]["ood_score"] == pytest.approx(direct[i]["ood_score"], rel=1e-4), name
        assert uploads[i]["p_malignant"] == pytest.approx(direct[i]["p_malignant"], abs=1e-5), name
    by_name = dict(zip(files, direct))
    assert (by_name["grey.png"]["decision"], by_name["grey.png"]["refer_reason"]) == ("refer", "out_of_scope")
    assert (by_name["china.jpg"]["decision"], by_name["china.jpg"]["refer_reason"]) == ("refer", "out_of_scope")
    assert "does not look like a dermoscopic image" in uploads[list(files).index("china.jpg")]["refer_text"]


def test_v2_metadata_describes_the_decision_outputs(server):
    meta = requests.get(f"{server.url}/v2/models/{MODEL_NAME}", timeout=30).json()
    outs = {o["name"]: o for o in meta["outputs"]}
    assert outs["decision"]["datatype"] == outs["refer_reason"]["datatype"] == "BYTES"
    assert "refer" in outs["decision"]["parameters"]["content"]
    policy = meta["parameters"]["decision_policy"]
    assert 0 < policy["sets"]["level"] < 1 and policy["scope"]["limit"] > 0


def test_explain_gives_no_heatmap_for_an_out_of_scope_image(server, images):
    from components.core.deploy import smoke

    r = post_file(
        server.url, smoke.out_of_scope_probe(), filename="grey.png", content_type="image/png", path="/explain"
    )
    assert r.status_code == 422 and "does not look like a dermoscopic image" in r.json()["error"]
    r = post_file(server.url, images["malignant"][0].read_bytes(), path="/explain")
    assert r.status_code == 200 and r.headers["x-decision"] in ("benign", "malignant", "refer")


# --- KServe's server: a real V2 client on both protocols, Prometheus metrics (issue 25) ---------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_triton_client_passes_health_metadata_and_inference(server, images, reference, protocol):
    """tritonclient, as a KServe or Triton user calls a V2 server: BYTES files (binary data over
    HTTP, raw contents over gRPC) and UINT8 pixels, with the answers the model gives in process."""
    from components.core.data.images import decode_image

    if protocol == "http":
        import tritonclient.http as tc

        client = tc.InferenceServerClient(server.url.removeprefix("http://"))
    else:
        import tritonclient.grpc as tc

        client = tc.InferenceServerClient(server.grpc_url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(MODEL_NAME)
        assert client.is_model_ready(MODEL_NAME, MODEL_VERSION)
        meta = client.get_model_metadata(MODEL_NAME)
        meta = meta if protocol == "http" else {"name": meta.name, "outputs": [{"name": o.name} for o in meta.outputs]}
        assert meta["name"] == MODEL_NAME
        assert [o["name"] for o in meta["outputs"]] == ["p_malignant", "label", "decision", "refer_reason"]

        blobs = [images["benign"][0].read_bytes(), images["malignant"][0].read_bytes()]
        expected = [reference.predict_bytes(b) for b in blobs]
        files = tc.InferInput("image", [2], "BYTES")
        files.set_data_from_numpy(np.array(blobs, dtype=object))
        result = client.infer(MODEL_NAME, [files], request_id="triton-1")
        response = result.get_response(as_json=True) if protocol == "grpc" else result.get_response()
        assert response["id"] == "triton-1" and response["model_version"] == MODEL_VERSION
        np.testing.assert_allclose(result.as_numpy("p_malignant"), [e["p_malignant"] for e in expected], atol=1e-5)
        assert [v.decode() for v in result.as_numpy("label")] == [e["label"] for e in expected]
        assert [v.decode() for v in result.as_numpy("decision")] == [e["decision"] for e in expected]
        assert [v.decode() for v in result.as_numpy("refer_reason")] == [e["refer_reason"] or "" for e in expected]

        pixels = np.stack([decode_image(b, reference.image_size) for b in blobs])
        tensor = tc.InferInput("pixels", list(pixels.shape), "UINT8")
        tensor.set_data_from_numpy(pixels)
        result = client.infer(
            MODEL_NAME,
            [tensor],
            model_version=MODEL_VERSION,
            outputs=[tc.InferRequestedOutput("decision"), tc.InferRequestedOutput("p_malignant")],
        )
        np.testing.assert_allclose(result.as_numpy("p_malignant"), [e["p_malignant"] for e in expected], atol=1e-5)
        assert result.as_numpy("label") is None  # only the outputs asked for

        bad = tc.InferInput("image", [1], "BYTES")
        bad.set_data_from_numpy(np.array([b"plain text"], dtype=object))
        from tritonclient.utils import InferenceServerException

        with pytest.raises(InferenceServerException, match="not an image"):
            client.infer(MODEL_NAME, [bad])
    finally:
        client.close()


def test_metrics_serve_prometheus_request_counts_and_latencies(server, images):
    good = images["benign"][1].read_bytes()
    before = metrics_of(server.url)
    for _ in range(2):
        assert post_file(server.url, good).status_code == 200
        assert requests.post(server.url + INFER, json=v2_bytes(good), timeout=60).status_code == 200
    assert post_file(server.url, b"not an image").status_code == 400
    after = metrics_of(server.url)

    def grew(name, **labels):
        return metric_total(after, name, **labels) - metric_total(before, name, **labels)

    # KServe's histograms time every V2 request; ours the upload routes, by answer.
    assert grew("request_predict_seconds_count", model_name=MODEL_NAME) >= 2
    assert grew("request_predict_seconds_sum", model_name=MODEL_NAME) > 0
    assert grew("request_preprocess_seconds_count", model_name=MODEL_NAME) >= 2
    assert grew("skin_cancer_upload_request_seconds_count", route="/predict", status="200") >= 2
    assert grew("skin_cancer_upload_request_seconds_count", route="/predict", status="400") >= 1
    assert grew("skin_cancer_upload_request_seconds_sum", route="/predict", status="200") > 0
    assert grew("skin_cancer_decisions_total", model_name=MODEL_NAME) >= 4
    assert grew("skin_cancer_batch_images_count", model_name=MODEL_NAME) >= 1

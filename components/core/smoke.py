"""A real inference smoke test: known benign and malignant images to a running server.

The images are held-out files read at run time from the data set's ``test/{benign,malignant}``
folders (S3 or local). Each goes to the V2 ``infer`` endpoint as a BYTES tensor (base64) one at
a time, then all together as one batch. The test fails on any HTTP error, a malformed answer
(wrong outputs, shapes, datatypes, labels, model name), a probability outside [0, 1] or not a
number, a label that disagrees with the served threshold, or a batch answer that differs from
the single answers. How many labels were right is reported, not judged: a handful of images
says little about accuracy, which the pipeline measured on the whole test split.
"""

import base64
import json
import logging
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from components.core.dataset import CLASSES

log = logging.getLogger(__name__)


class SmokeTestError(RuntimeError):
    """The served model failed the smoke test; the message lists every failure."""


@dataclass
class Sample:
    uri: str
    label: str
    data: bytes


@dataclass
class SmokeReport:
    url: str
    model_name: str
    model_version: str
    results: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def correct(self) -> int:
        return sum(r["label"] == r["expected"] for r in self.results)

    def to_dict(self) -> dict:
        return {"url": self.url, "model_name": self.model_name, "model_version": self.model_version,
                "images": len(self.results), "correct": self.correct, "seconds": self.seconds,
                "results": self.results}


def load_samples(data_uri: str, per_class: int = 2) -> list[Sample]:
    """The first ``per_class`` test images of each class (sorted by key, so reruns send the same)."""
    from components.core import storage
    from components.core.images import has_image_extension

    samples = []
    for cls in CLASSES:
        prefix = storage.join(data_uri, "test", cls)
        objects = sorted((o for o in storage.list_objects(prefix) if has_image_extension(o.relpath)),
                         key=lambda o: o.relpath)[:per_class]
        if not objects:
            raise SmokeTestError(f"no {cls} test images under {prefix}")
        samples += [Sample(o.uri, cls, storage.read_bytes(o.uri)) for o in objects]
    return samples


def _post_json(url: str, body: dict, timeout: float, headers: dict | None) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as err:
        detail = err.read()[:500].decode(errors="replace")
        raise SmokeTestError(f"POST {url}: HTTP {err.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise SmokeTestError(f"POST {url}: {err}") from None
    try:
        answer = json.loads(raw)
    except json.JSONDecodeError:
        raise SmokeTestError(f"POST {url}: answer is not JSON: {raw[:200]!r}") from None
    if not isinstance(answer, dict):
        raise SmokeTestError(f"POST {url}: answer is not a JSON object")
    return answer


def check_answer(answer: dict, n: int, model_name: str) -> tuple[list[float], list[str], float | None]:
    """Validate a V2 infer answer for ``n`` images; returns (probabilities, labels, threshold)."""
    problems = []
    if answer.get("model_name") != model_name:
        problems.append(f"model_name {answer.get('model_name')!r}, expected {model_name!r}")
    outputs = answer.get("outputs")
    by_name = {o.get("name"): o for o in outputs if isinstance(o, dict)} if isinstance(outputs, list) else {}
    p_out, l_out = by_name.get("p_malignant"), by_name.get("label")
    probs: list[float] = []
    labels: list[str] = []
    if p_out is None or l_out is None:
        problems.append(f"outputs must include p_malignant and label, got {sorted(k for k in by_name if k)}")
    else:
        for out, dtype in ((p_out, "FP32"), (l_out, "BYTES")):
            if out.get("datatype") != dtype or out.get("shape") != [n] or not isinstance(out.get("data"), list) \
                    or len(out["data"]) != n:
                problems.append(f"output {out.get('name')}: expected {dtype} shape [{n}] with {n} values, got "
                                f"{out.get('datatype')} {out.get('shape')} with "
                                f"{len(out['data']) if isinstance(out.get('data'), list) else 'no'} values")
        if not problems:
            probs, labels = p_out["data"], l_out["data"]
            for i, p in enumerate(probs):
                if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 <= p <= 1:
                    problems.append(f"image {i}: p_malignant {p!r} is not a probability in [0, 1]")
            for i, label in enumerate(labels):
                if label not in CLASSES:
                    problems.append(f"image {i}: label {label!r} is not one of {list(CLASSES)}")
    threshold = (answer.get("parameters") or {}).get("threshold")
    if threshold is None or isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        # The served model must say at which threshold it decides; no 0.5 is ever assumed.
        problems.append(f"the answer states no decision threshold (parameters.threshold = {threshold!r}); "
                        "the served model must be one with a stored threshold")
    elif not problems:
        for i, (p, label) in enumerate(zip(probs, labels)):
            if label != CLASSES[int(p >= threshold)]:
                problems.append(f"image {i}: label {label!r} disagrees with p={p:.4f} at threshold {threshold:.4f}")
    if problems:
        raise SmokeTestError("malformed answer: " + "; ".join(problems))
    return [float(p) for p in probs], list(labels), threshold


def run_smoke_test(url: str, model_name: str, samples: list[Sample], timeout: float = 60.0,
                   headers: dict | None = None, ready_timeout: float = 120.0) -> SmokeReport:
    """Send every sample to ``url`` (the server's base URL); raise :class:`SmokeTestError` on any failure."""
    if not samples or {s.label for s in samples} != set(CLASSES):
        raise SmokeTestError(f"need at least one sample of each class {list(CLASSES)}")
    base = url.rstrip("/")
    started = time.perf_counter()
    _wait_ready(base, ready_timeout, headers)
    infer = f"{base}/v2/models/{model_name}/infer"

    def body(batch: list[Sample]) -> dict:
        return {"id": "smoke-test", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(batch)],
                                                "data": [base64.b64encode(s.data).decode() for s in batch]}]}

    report = SmokeReport(base, model_name, "")
    failures = []
    for sample in samples:
        try:
            answer = _post_json(infer, body([sample]), timeout, headers)
            (p,), (label,), _ = check_answer(answer, 1, model_name)
            report.model_version = str(answer.get("model_version", ""))
            report.results.append({"uri": sample.uri, "expected": sample.label, "label": label, "p_malignant": p})
        except SmokeTestError as err:
            failures.append(f"{sample.uri}: {err}")
    if not failures:
        try:
            probs, labels, _ = check_answer(_post_json(infer, body(samples), timeout, headers), len(samples), model_name)
            for r, p, label in zip(report.results, probs, labels):
                if label != r["label"] or abs(p - r["p_malignant"]) > 1e-4:
                    failures.append(f"{r['uri']}: batch answer {label} {p:.6f} differs from single answer "
                                    f"{r['label']} {r['p_malignant']:.6f}")
        except SmokeTestError as err:
            failures.append(f"batch of {len(samples)}: {err}")
    report.seconds = time.perf_counter() - started
    if failures:
        raise SmokeTestError(f"smoke test of {infer} failed:\n  " + "\n  ".join(failures))
    log.info("smoke test passed: %d images, %d labelled as their folder", len(report.results), report.correct)
    return report


def _wait_ready(base: str, timeout: float, headers: dict | None) -> None:
    """A fresh revision may still be starting: wait for /v2/health/ready before judging it."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            request = urllib.request.Request(f"{base}/v2/health/ready", headers=headers or {})
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            last = str(err)
        if time.monotonic() >= deadline:
            raise SmokeTestError(f"{base}/v2/health/ready did not answer 200 within {timeout:.0f} s: {last}")
        time.sleep(2)

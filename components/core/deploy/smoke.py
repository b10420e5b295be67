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

from components.core.data.dataset import CLASSES

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
        return {
            "url": self.url,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "images": len(self.results),
            "correct": self.correct,
            "seconds": self.seconds,
            "results": self.results,
        }


def load_samples(data_uri: str, per_class: int = 2) -> list[Sample]:
    """The first ``per_class`` test images of each class (sorted by key, so reruns send the same)."""
    from components.core.data import storage
    from components.core.data.images import has_image_extension

    samples = []
    for cls in CLASSES:
        prefix = storage.join(data_uri, "test", cls)
        objects = sorted(
            (o for o in storage.list_objects(prefix) if has_image_extension(o.relpath)), key=lambda o: o.relpath
        )[:per_class]
        if not objects:
            raise SmokeTestError(f"no {cls} test images under {prefix}")
        samples += [Sample(o.uri, cls, storage.read_bytes(o.uri)) for o in objects]
    return samples


def _post_json(url: str, body: dict, timeout: float, headers: dict | None) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
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


DECISIONS = (*CLASSES, "refer")
REFER_REASONS = ("out_of_scope", "uncertain")


def out_of_scope_probe() -> bytes:
    """A flat grey PNG: no served model may give it a benign or malignant answer."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


def check_answer(answer: dict, n: int, model_name: str) -> tuple[list[float], list[str], float | None, list[tuple]]:
    """Validate a V2 infer answer for ``n`` images; returns (probabilities, labels, threshold,
    (decision, refer_reason) per image)."""
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
            if (
                out.get("datatype") != dtype
                or out.get("shape") != [n]
                or not isinstance(out.get("data"), list)
                or len(out["data"]) != n
            ):
                problems.append(
                    f"output {out.get('name')}: expected {dtype} shape [{n}] with {n} values, got "
                    f"{out.get('datatype')} {out.get('shape')} with "
                    f"{len(out['data']) if isinstance(out.get('data'), list) else 'no'} values"
                )
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
        problems.append(
            f"the answer states no decision threshold (parameters.threshold = {threshold!r}); "
            "the served model must be one with a stored threshold"
        )
    elif not problems:
        for i, (p, label) in enumerate(zip(probs, labels)):
            if label != CLASSES[int(p >= threshold)]:
                problems.append(f"image {i}: label {label!r} disagrees with p={p:.4f} at threshold {threshold:.4f}")
    decisions = _check_decisions(by_name, n, labels, problems)
    if problems:
        raise SmokeTestError("malformed answer: " + "; ".join(problems))
    return [float(p) for p in probs], list(labels), threshold, decisions


def _check_decisions(by_name: dict, n: int, labels: list[str], problems: list[str]) -> list[tuple]:
    """The decision policy's outputs: present, valid, and consistent with the label (a decided
    image's decision is its label; a refer, and only a refer, has a reason)."""
    d_out, r_out = by_name.get("decision"), by_name.get("refer_reason")
    if d_out is None or r_out is None:
        problems.append(
            "outputs must include decision and refer_reason (the served model must apply its decision policy)"
        )
        return []
    for out in (d_out, r_out):
        if out.get("datatype") != "BYTES" or not isinstance(out.get("data"), list) or len(out["data"]) != n:
            problems.append(f"output {out.get('name')}: expected BYTES with {n} values")
            return []
    pairs = list(zip(d_out["data"], r_out["data"]))
    for i, (decision, reason) in enumerate(pairs):
        if decision not in DECISIONS:
            problems.append(f"image {i}: decision {decision!r} is not one of {list(DECISIONS)}")
        elif (decision == "refer") != (reason in REFER_REASONS) or (decision != "refer" and reason != ""):
            problems.append(f"image {i}: decision {decision!r} with refer_reason {reason!r}")
        elif decision != "refer" and labels and decision != labels[i]:
            problems.append(f"image {i}: decision {decision!r} but label {labels[i]!r}")
    return pairs


def run_smoke_test(
    url: str,
    model_name: str,
    samples: list[Sample],
    timeout: float = 60.0,
    headers: dict | None = None,
    ready_timeout: float = 120.0,
) -> SmokeReport:
    """Send every sample to ``url`` (the server's base URL); raise :class:`SmokeTestError` on any failure."""
    if not samples or {s.label for s in samples} != set(CLASSES):
        raise SmokeTestError(f"need at least one sample of each class {list(CLASSES)}")
    base = url.rstrip("/")
    started = time.perf_counter()
    _wait_ready(base, ready_timeout, headers)
    infer = f"{base}/v2/models/{model_name}/infer"

    def body(batch: list[Sample]) -> dict:
        return {
            "id": "smoke-test",
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [len(batch)],
                    "data": [base64.b64encode(s.data).decode() for s in batch],
                }
            ],
        }

    report = SmokeReport(base, model_name, "")
    failures = []
    for sample in samples:
        try:
            answer = _post_json(infer, body([sample]), timeout, headers)
            (p,), (label,), _, ((decision, reason),) = check_answer(answer, 1, model_name)
            report.model_version = str(answer.get("model_version", ""))
            report.results.append(
                {
                    "uri": sample.uri,
                    "expected": sample.label,
                    "label": label,
                    "p_malignant": p,
                    "decision": decision,
                    "refer_reason": reason or None,
                }
            )
        except SmokeTestError as err:
            failures.append(f"{sample.uri}: {err}")
    if not failures:
        try:
            probs, labels, _, _ = check_answer(
                _post_json(infer, body(samples), timeout, headers), len(samples), model_name
            )
            for r, p, label in zip(report.results, probs, labels):
                if label != r["label"] or abs(p - r["p_malignant"]) > 1e-4:
                    failures.append(
                        f"{r['uri']}: batch answer {label} {p:.6f} differs from single answer "
                        f"{r['label']} {r['p_malignant']:.6f}"
                    )
        except SmokeTestError as err:
            failures.append(f"batch of {len(samples)}: {err}")
        failures += _probe_out_of_scope(infer, model_name, timeout, headers)
    report.seconds = time.perf_counter() - started
    if failures:
        raise SmokeTestError(f"smoke test of {infer} failed:\n  " + "\n  ".join(failures))
    log.info("smoke test passed: %d images, %d labelled as their folder", len(report.results), report.correct)
    return report


def _probe_out_of_scope(infer: str, model_name: str, timeout: float, headers: dict | None) -> list[str]:
    """A flat grey frame must be referred as out of scope: proof the server applies the policy."""
    body = {
        "id": "smoke-test-scope",
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(out_of_scope_probe()).decode()],
            }
        ],
    }
    try:
        _, _, _, ((decision, reason),) = check_answer(_post_json(infer, body, timeout, headers), 1, model_name)
    except SmokeTestError as err:
        return [f"out-of-scope probe (a flat grey frame): {err}"]
    if (decision, reason) != ("refer", "out_of_scope"):
        return [
            f"out-of-scope probe (a flat grey frame): answered {decision!r} ({reason or 'no reason'}), "
            "expected refer (out_of_scope)"
        ]
    return []


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

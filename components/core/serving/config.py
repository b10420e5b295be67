"""What the inference server is configured with: its limits and the identity it reports.

The environment is read through :mod:`components.core.settings` (which declares the variables
and their defaults), when a :class:`ServingSettings` is made, never at import."""

from dataclasses import dataclass, field

from components.core import settings

DEFAULT_MAX_BATCH = 32  # images in one V2 request (a command-line flag, not an environment variable)
# Adaptive batching (serving/batching.py), named after KServe's batcher (maxBatchSize, maxLatency):
# images in one forward pass, and how long the first request of a batch waits for company. On the
# real-data champion (2-core CPU) a single request takes ~100 ms, so 2 ms costs a lone client ~2 %;
# under load batches fill from the requests that queue during the previous pass.
DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_MAX_LATENCY_MS = 2.0


def _env_upload_bytes() -> int:
    return int(settings.env_number("SKIN_CANCER_MAX_UPLOAD_MB") * 1024 * 1024)


def _env_max_pixels() -> int:
    return settings.env_number("SKIN_CANCER_MAX_PIXELS", int)


def _env_body_timeout_s() -> float:
    return settings.env_number("SKIN_CANCER_BODY_TIMEOUT_S")


@dataclass
class ServingSettings:
    """Limits and the identity the server reports. ``None`` names keep the Predictor's own.

    A limit not given is ``SKIN_CANCER_MAX_UPLOAD_MB`` (MiB), ``SKIN_CANCER_MAX_PIXELS`` or
    ``SKIN_CANCER_BODY_TIMEOUT_S`` (the longest wait for the next piece of a request body), else
    its default declared in components/core/settings.py."""

    max_upload_bytes: int = field(default_factory=_env_upload_bytes)
    max_pixels: int = field(default_factory=_env_max_pixels)
    max_batch: int = DEFAULT_MAX_BATCH
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS
    body_timeout_s: float = field(default_factory=_env_body_timeout_s)
    model_name: str | None = None
    model_version: str | None = None

    @classmethod
    def from_env(cls, **overrides) -> "ServingSettings":
        """The environment's settings (see the class), then ``overrides`` (values of ``None``
        are ignored, so command-line flags left unset fall through)."""
        s = cls(**{key: value for key, value in overrides.items() if value is not None})
        if s.max_upload_bytes <= 0 or s.max_pixels <= 0 or s.max_batch <= 0 or not s.body_timeout_s > 0:
            raise ValueError("upload limit, pixel limit, batch limit and body timeout must be positive")
        if s.max_batch_size <= 0 or not s.max_latency_ms >= 0:
            raise ValueError("--max-batch-size must be positive and --max-latency-ms not negative")
        return s

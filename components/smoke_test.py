"""Stage 5: a real inference smoke test of the deployed model with held-out images.

Sends known benign and malignant test images (read at run time from the data set) to the
server's V2 endpoint and fails the run on an error, a malformed answer or a probability
outside [0, 1]. The plain code is components/core/deploy/smoke.py.
"""

from kfp import dsl
from kfp.dsl import Metrics, Output

from components.core.settings import default_images


# The image is set per task by build_pipeline (CompileSettings.image); this is its default.
@dsl.component(base_image=default_images()[0], install_kfp_package=False)
def smoke_test(
    url: str,
    model_name: str,
    data_uri: str,
    metrics: Output[Metrics],
    samples_per_class: int = 2,
    timeout_seconds: int = 60,
) -> str:
    """Send ``samples_per_class`` test images of each class from ``data_uri`` to the server at
    ``url``; returns the report as JSON."""
    import json
    import logging

    from components.core.deploy import smoke

    logging.basicConfig(level=logging.INFO)
    samples = smoke.load_samples(data_uri, samples_per_class)
    report = smoke.run_smoke_test(url, model_name, samples, timeout=timeout_seconds)
    metrics.log_metric("smoke_images", len(report.results))
    metrics.log_metric("smoke_labelled_as_folder", report.correct)
    metrics.log_metric("smoke_seconds", report.seconds)
    print(json.dumps(report.to_dict(), indent=1))
    return json.dumps(report.to_dict())

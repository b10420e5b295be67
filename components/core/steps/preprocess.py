"""The preprocess step: raw images to uint8 splits, the artifacts' metadata, one MLflow run.

Called by ``components/preprocess.py`` (see this package's docstring).
"""


def run_preprocess(
    data_uri: str,
    image_size: int,
    val_fraction: float,
    seed: int,
    max_bad_fraction: float,
    mlflow_tracking_uri: str,
    experiment_name: str,
    artifacts: dict,
    allow_leakage: bool = False,
):
    """The component's body, as plain Python: preprocess, annotate artifacts, log to MLflow."""
    import json
    import logging
    from collections import namedtuple

    import mlflow

    from components.core.data import dataset
    from components.core.registry import tracking

    logging.basicConfig(level=logging.INFO)
    experiment_id = tracking.setup(mlflow_tracking_uri, experiment_name)  # fail before any work
    report = dataset.preprocess(
        data_uri,
        {name: art.path for name, art in artifacts.items()},
        image_size=image_size,
        val_fraction=val_fraction,
        seed=seed,
        max_bad_fraction=max_bad_fraction,
        allow_leakage=allow_leakage,
    )
    for name, art in artifacts.items():
        art.metadata.update(
            {
                "split": name,
                "count": report.splits[name]["count"],
                "class_counts": report.splits[name]["class_counts"],
                "image_size": image_size,
                "fingerprint": report.fingerprint,
                "source": data_uri,
                "skipped": len(report.skipped),
                "class_balance": report.class_balance[name],
                "duplicate_groups": len(report.duplicates),
                "leakage_groups": len(report.leakage),
            }
        )
    with tracking.start_run(experiment_id, f"preprocess-{report.fingerprint}"):
        mlflow.set_tags({"stage": "preprocess", "data_fingerprint": report.fingerprint})
        mlflow.log_params(
            {
                "data_uri": tracking.redact(data_uri),
                "image_size": image_size,
                "val_fraction": val_fraction,
                "seed": seed,
                "allow_leakage": allow_leakage,
            }
        )
        mlflow.log_metrics(
            {f"{s}_{c}": n for s, v in report.splits.items() for c, n in v["class_counts"].items()}
            | {f"{s}_class_ratio": b["ratio"] for s, b in report.class_balance.items() if b["ratio"] is not None}
            | {
                "skipped": len(report.skipped),
                "images_per_second": report.images_per_second,
                "duplicate_groups": len(report.duplicates),
                "leakage_groups": len(report.leakage),
            }
        )
        tracking.log_json(report.to_dict(), "preprocess_report.json")
    out = namedtuple("PreprocessOutputs", ["fingerprint", "report"])
    return out(report.fingerprint, json.dumps(report.to_dict()))

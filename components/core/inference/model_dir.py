"""The model folder a train task writes and the predictor and the server read: ``model.keras``,
``model.json`` (threshold, image size, classes, family, MLflow run) and the decision policy's files."""


def write_model_dir(path: str, model, meta: dict, extra_files: dict[str, bytes] | None = None) -> None:
    """Write ``model.keras``, ``model.json`` and ``extra_files`` (the decision policy's) to
    ``path`` atomically: all go to a temporary
    sibling directory, which is renamed into place last. A task killed half way leaves no
    ``path`` at all, never a directory with a model but no metadata (or a torn file)."""
    import json
    import os
    import shutil
    import tempfile

    final = os.path.abspath(path)
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(final)}.partial-")
    try:
        model.save(os.path.join(tmp, "model.keras"))
        with open(os.path.join(tmp, "model.json"), "w") as fh:
            json.dump(meta, fh)
        for name, data in (extra_files or {}).items():
            with open(os.path.join(tmp, name), "wb") as fh:
                fh.write(data)
        if os.path.isdir(final):
            shutil.rmtree(final)  # a retried task's earlier (complete) output
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

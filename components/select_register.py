"""Stage 3: pick the best model on validation data and register it.

Two components, one per kind of pipeline (CompileSettings.require_approval, fixed when the
pipeline is compiled): ``select_and_register`` makes the winner @champion when it is at least as
good as the model already serving; ``select_and_propose`` never moves @champion: such a winner
waits as @challenger for a person (``skin-cancer approve``), with its evidence in MLflow. It has
no input that could make it promote, so a pipeline built with it cannot change the champion."""

from typing import List, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Model, Output

from components.core.settings import default_images


# The image is set per task by build_pipeline (CompileSettings.image); this is its default.
@dsl.component(base_image=default_images()[0], install_kfp_package=False)
def select_and_register(
    results: List[str],
    val_data: Input[Dataset],
    test_data: Input[Dataset],
    mlflow_tracking_uri: str,
    experiment_name: str,
    registered_model_name: str,
    data_fingerprint: str,
    summary: Output[Markdown],
    dashboard: Output[HTML],
    model_card: Output[Markdown],
    ensemble_model: Output[Model],
    runtime_image: str = "",
    submitted_by: str = "",
    kfp_run_name: str = "",
) -> NamedTuple(
    "Registration",
    model_name=str,
    model_version=str,
    model_uri=str,
    champion_changed=bool,
    summary_json=str,
    model_artifact_uri=str,
):
    """Collect every trained model's result, select, compare with @champion and register.

    ``model_artifact_uri`` is the winner's KFP Model artifact (model.keras + model.json; s3://
    on a cluster): the deploy step serves it when the winner became @champion. ``dashboard``:
    every model's ROC and precision-recall curves, the winner and why; ``model_card``: the
    registered version's card (also in its MLflow run and beside the Model artifact);
    ``ensemble_model``: the average of the best models, when it won (steps/ensemble.py), else empty.
    ``runtime_image``: this task's image, added to the training image the winner recorded, so the
    registered version names both (``runtime=REF,train=REF``)."""
    from components.core.steps.select import run_select_and_register

    return run_select_and_register(
        results=results,
        val_path=val_data.path,
        test_path=test_data.path,
        mlflow_tracking_uri=mlflow_tracking_uri,
        experiment_name=experiment_name,
        registered_model_name=registered_model_name,
        data_fingerprint=data_fingerprint,
        summary_path=summary.path,
        dashboard_path=dashboard.path,
        card_path=model_card.path,
        ensemble_path=ensemble_model.path,
        ensemble_uri=ensemble_model.uri,
        runtime_image=runtime_image,
        submitted_by=submitted_by,
        kfp_run_name=kfp_run_name,
    )


@dsl.component(base_image=default_images()[0], install_kfp_package=False)
def select_and_propose(
    results: List[str],
    val_data: Input[Dataset],
    test_data: Input[Dataset],
    mlflow_tracking_uri: str,
    experiment_name: str,
    registered_model_name: str,
    data_fingerprint: str,
    summary: Output[Markdown],
    dashboard: Output[HTML],
    model_card: Output[Markdown],
    ensemble_model: Output[Model],
    runtime_image: str = "",
    submitted_by: str = "",
    kfp_run_name: str = "",
) -> NamedTuple(
    "Proposal",
    model_name=str,
    model_version=str,
    model_uri=str,
    champion_changed=bool,
    summary_json=str,
    model_artifact_uri=str,
):
    """Select and register like ``select_and_register``, but a winner that beats @champion is
    proposed (@challenger, approval.status = pending, evidence in MLflow) and @champion never moves
    (``champion_changed`` is always false). ``summary`` ends with the command a person runs next;
    ``submitted_by`` (who submitted the run) and ``kfp_run_name`` go into the evidence."""
    from components.core.steps.select import run_select_and_register

    return run_select_and_register(
        results=results,
        val_path=val_data.path,
        test_path=test_data.path,
        mlflow_tracking_uri=mlflow_tracking_uri,
        experiment_name=experiment_name,
        registered_model_name=registered_model_name,
        data_fingerprint=data_fingerprint,
        summary_path=summary.path,
        dashboard_path=dashboard.path,
        card_path=model_card.path,
        ensemble_path=ensemble_model.path,
        ensemble_uri=ensemble_model.uri,
        runtime_image=runtime_image,
        require_approval=True,
        submitted_by=submitted_by,
        kfp_run_name=kfp_run_name,
    )

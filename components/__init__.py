"""Pipeline components and their plain-Python core.

Security default for every process that imports this package: MLflow must never unpickle.
Its Keras loader would otherwise run ``custom_objects.cloudpickle`` from a model artifact
(``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` defaults to true), so a tampered registry entry
could execute code in the pipeline or the server. Our models need no pickled objects.
"""

import os

os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"

"""The pipeline steps' bodies, one module per step: ``preprocess``, ``train``, ``select``, ``score``.

Each ``@dsl.component`` in ``components/`` imports its step's function inside its body (KFP runs
only the function's own source in the container), so every step is callable and testable without
KFP. These modules must not import ``kfp.dsl`` decorators: inside a running component, ``kfp.dsl``
is the slim runtime package.
"""

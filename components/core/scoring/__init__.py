"""Batch scoring of new images after registration, and monitoring of what arrives.

:mod:`.batch` lists a prefix, skips what this model version already scored (by content hash),
scores the rest in batches and writes one Parquet file per run; :mod:`.drift` compares the
scored images and answers with the model's training reference; :mod:`.labels` joins labels
that arrive later; :mod:`.run` runs them end to end; :mod:`.report` writes the worklist.
"""

"""Training progress: one line per epoch that a program can read and a person can too.

``training.fit_one`` adds :func:`callback` to every ``model.fit`` (in place of Keras' own
``verbose=2`` lines). Each event is one line on stdout::

    skin-cancer-progress {"event": "epoch", "model": "basic", "epoch": 3, "epochs": 30, ...}

Under ``skin-cancer run`` every task is a child process whose output goes to the log file;
the parent (``pipelines/console.py``) reads these lines from it and draws a progress bar per
model. On a cluster they are the pod log's line per epoch. A command that trains in its own
process (``skin-cancer train``) takes the events directly with :func:`set_sink`.

Events: ``begin`` (a ``model.fit`` starts: crossval fits once per fold, then the final model),
``epoch`` (after each epoch: the epoch's seconds and every metric Keras logged, ``val_auc``
among them) and ``end`` (the fit finished, early stopping included).
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Callable

MARKER = "skin-cancer-progress "

_sink: Callable[[dict], None] | None = None


def set_sink(sink: Callable[[dict], None] | None) -> None:
    """Send events to ``sink`` (in this process) instead of printing them; None: print again."""
    global _sink
    _sink = sink


def parse(line: str) -> dict | None:
    """The event in a line of output (leading indentation allowed), or None for any other line."""
    text = line.strip()
    if not text.startswith(MARKER):
        return None
    try:
        event = json.loads(text[len(MARKER) :])
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def model_label(argv: list[str] | None = None) -> str | None:
    """The model's name when this process is a KFP train task, else None.

    KFP starts a task as ``... executor_main --executor_input JSON ...``; the train component's
    ``model_config`` parameter holds the name (or only the family)."""
    argv = sys.argv if argv is None else argv
    try:
        raw = argv[argv.index("--executor_input") + 1]
        config = json.loads(raw)["inputs"]["parameterValues"]["model_config"]
        return str(config.get("name") or config["family"])
    except (ValueError, IndexError, KeyError, TypeError, AttributeError):
        return None


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return round(value, 4) if math.isfinite(value) else None


class Reporter:
    """Turns Keras' callback calls into events (plain Python: testable without Keras)."""

    def __init__(self, epochs: int, label: str | None = None, clock: Callable[[], float] = time.perf_counter):
        self.epochs = int(epochs)
        self.label = label if label is not None else model_label()
        self._clock = clock
        self._epoch_started = self._fit_started = 0.0
        self._last_epoch = 0

    def _emit(self, event: str, **fields) -> None:
        record = {"event": event, "model": self.label, "epochs": self.epochs, **fields}
        if _sink is not None:
            _sink(record)
        else:
            print(MARKER + json.dumps(record), flush=True)  # the parent reads it as it comes

    def begin(self) -> None:
        self._fit_started = self._clock()
        self._last_epoch = 0
        self._emit("begin")

    def epoch_begin(self) -> None:
        self._epoch_started = self._clock()

    def epoch_end(self, epoch: int, logs: dict | None) -> None:
        self._last_epoch = epoch + 1  # Keras counts from 0
        metrics = {k: v for k, v in ((k, _number(v)) for k, v in (logs or {}).items()) if v is not None}
        self._emit(
            "epoch", epoch=self._last_epoch, seconds=round(self._clock() - self._epoch_started, 2), metrics=metrics
        )

    def end(self) -> None:
        self._emit("end", epoch=self._last_epoch, seconds=round(self._clock() - self._fit_started, 2))


def callback(epochs: int, label: str | None = None):
    """A Keras callback that reports ``model.fit``'s progress as events."""
    import keras

    reporter = Reporter(epochs, label)
    return keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: reporter.begin(),
        on_epoch_begin=lambda epoch, logs: reporter.epoch_begin(),
        on_epoch_end=reporter.epoch_end,
        on_train_end=lambda logs: reporter.end(),
    )

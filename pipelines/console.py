"""What ``skin-cancer`` shows a person, and where everything else goes.

By default the console shows only this module's lines: one as each task starts and ends (with
its time and status), a progress bar over each model's epochs with its validation AUC, the
warnings a task logs itself (data-quality findings), then the results and where to look.
Everything else (kfp.local's task logs with each task's executor input, the tasks' own output,
TensorFlow's C++ start-up lines, Python warnings, MLflow's messages) goes to a log file under
the work directory. With ``-v`` the console shows all of it as well, as kfp.local prints it. A
task that fails shows its last lines and the log's path.

How: :class:`Session` swaps this process's ``sys.stdout`` and ``sys.stderr`` for
:class:`LineRouter` streams and the root logger's handlers for one that writes to them.
kfp.local's SubprocessRunner prints each task's output (stdout and stderr merged, indented)
and logs through the root logger, from the thread that runs the task, so every line reaches
:meth:`TaskWatcher.feed` with the thread it came from. The train tasks print one
``skin-cancer-progress`` line per epoch (components/core/modeling/progress.py), which becomes the bar.

Commands that run TensorFlow in their own process (predict, serve, train) use
:func:`quiet_tensorflow_start`: TensorFlow's C++ start-up lines go to file descriptor 2
directly, not through ``sys.stderr``, and ``TF_CPP_MIN_LOG_LEVEL`` does not silence absl's
notices before its logging starts.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import sys
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Callable, TextIO

from components.core.modeling import progress

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# kfp.local's own log lines: "13:36:11.424 - INFO - Executing task 'train'" (task output is indented).
_KFP = r"^\d\d:\d\d:\d\d\.\d+ - \w+ - "
KFP_LINE = re.compile(_KFP)
# A task's own warnings and errors, logged through the root logger that KFP's executor sets up
# ("[KFP Executor 2026-11-28 13:36:16,568 WARNING]: ..."): data-quality findings, for example.
TASK_WARNING = re.compile(r"^\s*\[KFP Executor [^\]]* (WARNING|ERROR|CRITICAL)\]: (.*)$")
TASK_START = re.compile(_KFP + r"Executing task '([^']+)'")
TASK_END = re.compile(_KFP + r"Task '([^']+)' finished with status (\w+)")
# Lines that look alarming but say nothing is wrong: TensorFlow's notices on a machine without a
# GPU, and about CPU features. They stay in the log; a failed task's excerpt leaves them out.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|failed call to cuInit|Could not find cuda drivers|Unable to register cu\w+ factory"
    r"|oneDNN custom operations are on|This TensorFlow binary is optimized to use available CPU"
    r"|To enable the following instructions|rebuild TensorFlow with the appropriate compiler flags"
)
TAIL_LINES = 25


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def log_path(workdir: str | Path, command: str) -> Path:
    """``<workdir>/logs/<command>-<date>-<time>.log`` (the folder is created)."""
    folder = Path(workdir) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}.log"


class Console:
    """A person's view: status and progress lines on ``err``, results on ``out``.

    ``bars``: tqdm progress bars (default: when ``err`` is a terminal); otherwise a few plain
    lines per model, which read well in CI logs and pipes. ``record`` receives every line shown,
    so the log holds what the console showed."""

    INDENT = " " * 10

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        bars: bool | None = None,
        show_progress: bool = True,
        record: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.out, self.err = out, err
        self.bars = isatty(err) if bars is None else bars
        self.show_progress = show_progress
        self._record = record
        self._clock = clock
        self._lock = threading.RLock()

    def _write(self, stream: TextIO, text: str) -> None:
        with self._lock:
            if self.bars and stream is self.err:
                from tqdm import tqdm

                tqdm.write(text, file=stream)  # above any bar that is drawn
            else:
                stream.write(text + "\n")
            stream.flush()
            if self._record:
                self._record(f"[console] {text}")

    def status(self, text: str) -> None:
        self._write(self.err, text)

    def task(self, name: str, what: str) -> None:
        """``13:36:11  preprocess            done in 6.5 s``"""
        self.status(f"{time.strftime('%H:%M:%S', time.localtime(self._clock()))}  {name:<20} {what}")

    def detail(self, text: str) -> None:
        self.status(f"{self.INDENT}{text}")

    def result(self, text: str = "") -> None:
        with self._lock:
            self.err.flush()
        self._write(self.out, text)

    def fit(self, label: str, epochs: int) -> "FitProgress":
        return FitProgress(self, label, epochs)


class FitProgress:
    """One ``model.fit`` on the console: a tqdm bar on a terminal, else about five plain lines."""

    def __init__(self, console: Console, label: str, epochs: int):
        self.console, self.label, self.epochs = console, label, max(1, int(epochs))
        self.epoch = 0
        self.val_auc: float | None = None
        self._step = max(1, math.ceil(self.epochs / 5))
        self._bar = None
        self._closed = False
        if console.show_progress and console.bars:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.epochs,
                desc=f"{Console.INDENT}{label}",
                unit="epoch",
                file=console.err,
                leave=True,
                dynamic_ncols=True,
                mininterval=0.5,
                bar_format="{desc}: {bar} {n_fmt}/{total_fmt} epochs [{elapsed}<{remaining}{postfix}]",
            )

    def update(self, epoch: int, metrics: dict) -> None:
        previous, self.epoch = self.epoch, min(int(epoch), self.epochs)
        if metrics.get("val_auc") is not None:
            self.val_auc = float(metrics["val_auc"])
        auc = f"val AUC {self.val_auc:.3f}" if self.val_auc is not None else ""
        if self._bar is not None:
            if auc:
                self._bar.set_postfix_str(auc, refresh=False)
            self._bar.update(self.epoch - previous)
        elif self.console.show_progress and (self.epoch % self._step == 0 or self.epoch == self.epochs):
            self.console.detail(f"{self.label}: epoch {self.epoch}/{self.epochs}" + (f", {auc}" if auc else ""))

    def close(self, stopped_early: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if stopped_early and self.console.show_progress and 0 < self.epoch < self.epochs:
            self.console.detail(f"{self.label}: stopped early after epoch {self.epoch}/{self.epochs}")


class ModelProgress:
    """One model's training events (components/core/modeling/progress.py) as progress bars, one per
    ``model.fit``: crossval fits once per fold and then the final model."""

    def __init__(self, console: Console, label: str | None = None):
        self.console = console
        self.label = label
        self.fits: list[FitProgress] = []

    def event(self, event: dict) -> None:
        self.label = self.label or event.get("model")
        epochs = int(event.get("epochs") or 1)
        fit = self.fits[-1] if self.fits else None
        kind = event.get("event")
        if kind == "begin":
            if fit is None or fit.epoch >= fit.epochs:  # the first fit, or the next one
                self._new_fit(epochs)
        elif kind == "epoch":
            epoch = int(event.get("epoch") or 0)
            if fit is None or epoch <= fit.epoch:  # a new fit, from its first epoch
                fit = self._new_fit(epochs)
            fit.update(epoch, event.get("metrics") or {})
        # "end" short of the last epoch is early stopping, or the end of a frozen-backbone phase
        # that the next fit continues (its epochs count on): the next event tells which.

    def _new_fit(self, epochs: int) -> FitProgress:
        if self.fits:
            self.fits[-1].close(stopped_early=True)
        label = self.label or "model"
        if self.fits:
            label = f"{label} (fit {len(self.fits) + 1})"
        self.fits.append(self.console.fit(label, epochs))
        return self.fits[-1]

    def close(self) -> None:
        for fit in self.fits:
            fit.close(stopped_early=True)


class _Task:
    def __init__(self, name: str, started: float, console: Console):
        self.name = name
        self.started = started
        self.progress = ModelProgress(console)
        self.lines: deque[str] = deque(maxlen=400)

    @property
    def display(self) -> str:
        label = self.progress.label  # the model, for a train task
        return f"{self.name} {label}" if label and label != self.name else self.name

    def excerpt(self, n: int = TAIL_LINES) -> list[str]:
        """The task's own last ``n`` lines (kfp.local's indent taken off), without blank lines,
        kfp.local's lines about the task, or known noise."""
        useful = [
            line[4:] if line.startswith("    ") else line
            for line in self.lines
            if line.strip() and not KFP_LINE.match(line) and not NOISE.search(line)
        ]
        return useful[-n:]


class TaskWatcher:
    """Follows kfp.local's output line by line and tells the console what happens.

    Lines come from the thread that runs their task (kfp.local runs a ParallelFor's iterations
    in a thread pool), so each thread's lines belong to the task it started last. Skipped
    branches are not shown: locally that is the deploy branch, always (and kfp.local 2.17
    cannot resolve the champion-changed condition, so its log says that one is skipped too)."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic):
        self.console = console
        self._clock = clock
        self._running: dict[int, _Task] = {}
        self.finished: list[tuple[_Task, str, float]] = []
        self._lock = threading.RLock()

    def feed(self, line: str, thread: int | None = None) -> None:
        thread = threading.get_ident() if thread is None else thread
        with self._lock:
            task = self._running.get(thread)
            event = progress.parse(line)
            if event is not None:
                if task is not None:
                    task.progress.event(event)
                return
            start = TASK_START.match(line)
            if start:
                task = self._running[thread] = _Task(start.group(1), self._clock(), self.console)
                self.console.task(task.name, "started")
                return
            if task is not None:
                task.lines.append(line)
                end = TASK_END.match(line)
                if end and end.group(1) == task.name:
                    self._finish(thread, task, end.group(2))
                warned = TASK_WARNING.match(line)
                if warned:
                    self.console.detail(f"{task.display}: {warned.group(1).lower()}: {warned.group(2)}")

    def _finish(self, thread: int, task: _Task, status: str) -> None:
        del self._running[thread]
        task.progress.close()
        seconds = self._clock() - task.started
        ok = status == "SUCCESS"
        self.console.task(task.display, f"done in {duration(seconds)}" if ok else f"FAILED after {duration(seconds)}")
        self.finished.append((task, status, seconds))

    def report_failure(self, error: BaseException, log: Path | None) -> None:
        """A failed run on the console: each failed task, its last lines, and the log's path."""
        with self._lock:
            for thread, task in list(self._running.items()):
                self._finish(thread, task, "FAILED")
            failed = [t for t, status, _ in self.finished if status != "SUCCESS"]
        for task in failed:
            lines = task.excerpt()
            if lines:
                self.console.detail(f"last lines of {task.display}:")
                for line in lines:
                    self.console.detail(f"| {line.rstrip()}")
        message = strip_ansi(str(error)).strip() or type(error).__name__
        self.console.status(f"error: {message}")
        if log is not None:
            self.console.status(f"the whole log: {log}")


class LineRouter(io.TextIOBase):
    """A text stream that hands each complete line to ``on_line(line, thread)``.

    Partial lines are kept per thread: kfp.local prints a task's indent and its line in two
    writes, and tasks in a ParallelFor print from several threads at once. ``passthrough``
    (``-v``) also receives every write unchanged."""

    def __init__(self, on_line: Callable[[str, int], None], passthrough: TextIO | None = None):
        super().__init__()
        self._on_line = on_line
        self._passthrough = passthrough
        self._partial: dict[int, str] = {}
        self._lock = threading.RLock()

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if self._passthrough is not None:
            self._passthrough.write(text)
        thread = threading.get_ident()
        with self._lock:
            pending = self._partial.pop(thread, "") + text
            *lines, rest = pending.split("\n")
            if rest:
                self._partial[thread] = rest
            for line in lines:
                self._on_line(line, thread)
        return len(text)

    def flush(self) -> None:
        if self._passthrough is not None:
            self._passthrough.flush()

    def drain(self) -> None:
        """Hand on what is left of each thread's last line."""
        with self._lock:
            partial, self._partial = self._partial, {}
        for thread, rest in partial.items():
            self._on_line(rest, thread)


class Session:
    """While it is open, everything this process prints or logs goes to the log file at ``path``
    (and, with ``verbose``, to the console as well); ``console`` shows a person the rest, and
    ``watcher`` turns kfp.local's output into task lines and progress bars."""

    LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

    def __init__(
        self,
        path: Path,
        verbose: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
        bars: bool | None = None,
    ):
        self.path = Path(path)
        self.verbose = verbose
        self._out, self._err = out or sys.stdout, err or sys.stderr
        self._bars = bars
        self._file: TextIO | None = None
        self._lock = threading.Lock()

    def write_log(self, line: str) -> None:
        with self._lock:
            if self._file is not None and not self._file.closed:
                self._file.write(strip_ansi(line) + "\n")

    def _line(self, line: str, thread: int) -> None:
        clean = strip_ansi(line)
        self.write_log(clean)
        self.watcher.feed(clean, thread)

    def __enter__(self) -> "Session":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8", errors="replace", buffering=1)
        self.console = Console(
            self._out,
            self._err,
            bars=False if self.verbose else self._bars,
            show_progress=not self.verbose,
            record=self.write_log,
        )
        self.watcher = TaskWatcher(self.console)
        self._saved = (sys.stdout, sys.stderr)
        self._stdout = LineRouter(self._line, self._out if self.verbose else None)
        self._stderr = LineRouter(self._line, self._err if self.verbose else None)
        root = logging.getLogger()
        self._saved_logging = (root.level, root.handlers[:])
        handler = logging.StreamHandler(self._stderr)
        handler.setFormatter(logging.Formatter(self.LOG_FORMAT))
        root.handlers = [handler]
        root.setLevel(logging.INFO)
        sys.stdout, sys.stderr = self._stdout, self._stderr
        return self

    def __exit__(self, kind, error, tb) -> None:
        for router in (self._stdout, self._stderr):
            router.drain()
        sys.stdout, sys.stderr = self._saved
        root = logging.getLogger()
        root.setLevel(self._saved_logging[0])
        root.handlers = self._saved_logging[1]
        if error is not None:
            self.write_log("".join(traceback.format_exception(kind, error, tb)).rstrip())
            if not isinstance(error, KeyboardInterrupt):
                self.console.status(f"the whole log: {self.path}")
        with self._lock:
            self._file.close()


@contextlib.contextmanager
def fd_to_file(fd: int, path: Path | str):
    """Point file descriptor ``fd`` at ``path`` (appending) while the block runs."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = os.dup(fd)
    target = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(target, fd)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(target)


def startup_log(workdir: str | Path, command: str) -> Path | None:
    """``<workdir>/logs/<command>.log``, emptied, for a command's start-up messages; in the
    temporary directory when ``workdir`` does not exist or cannot be written; None when neither can."""
    import tempfile

    for folder in (Path(workdir), Path(tempfile.gettempdir()) / "skin-cancer"):
        if folder == Path(workdir) and not folder.is_dir():
            continue
        try:
            (folder / "logs").mkdir(parents=True, exist_ok=True)
            path = folder / "logs" / f"{command}.log"
            path.write_text("")
            return path
        except OSError:
            continue
    return None


def quiet_tensorflow_start(log: Path | None) -> None:
    """Import TensorFlow and let it look for accelerators with its output going to ``log``.

    Its C++ start-up lines (absl's "All log messages before absl::InitializeLog()", "Could not
    find cuda drivers" and "failed call to cuInit" on a machine without GPU) and the import's
    Python warnings land there (nowhere for None) instead of on the console. Whatever
    TensorFlow says later still reaches the console. A machine's GPUs are found and used as
    before: nothing is hidden."""
    target = str(log) if log is not None else os.devnull
    with fd_to_file(2, target), open(target, "a", encoding="utf-8") as py_log, contextlib.redirect_stderr(py_log):
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")

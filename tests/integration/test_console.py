"""The console a person sees (pipelines/console.py, components/core/modeling/progress.py): what shows by
default, what goes to the log file, and `skin-cancer run` end to end on a tiny data set."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import threading
from pathlib import Path

import pytest

from components.core.modeling import progress
from pipelines import console as con
from tests.support.cli import TINY, run_cli

# What must never reach the console of a healthy run.
ALARMING = re.compile(r"error|warning|traceback|E0000|W0000|cuInit|executor_input|parameterValues", re.IGNORECASE)


def plain_console(bars: bool = False):
    out, err = io.StringIO(), io.StringIO()
    return con.Console(out, err, bars=bars, clock=lambda: 0.0), out, err


# --- progress events (the train task's side) ---------------------------------------------------


def test_reporter_prints_one_parsable_line_per_event(capsys):
    ticks = iter([0.0, 1.0, 3.5, 10.0])
    reporter = progress.Reporter(3, label="basic", clock=lambda: next(ticks))
    reporter.begin()
    reporter.epoch_begin()
    reporter.epoch_end(0, {"loss": 0.5, "val_auc": 0.81234567, "nan": float("nan"), "text": "x"})
    reporter.end()
    lines = capsys.readouterr().out.splitlines()
    events = [progress.parse("    " + line) for line in lines]  # kfp.local indents task output
    assert [e["event"] for e in events] == ["begin", "epoch", "end"]
    assert events[1] == {
        "event": "epoch",
        "model": "basic",
        "epochs": 3,
        "epoch": 1,
        "seconds": 2.5,
        "metrics": {"loss": 0.5, "val_auc": 0.8123},
    }
    assert events[2]["epoch"] == 1 and events[2]["seconds"] == 10.0
    assert progress.parse("Epoch 1/3") is None and progress.parse(progress.MARKER + "{not json") is None


def test_reporter_sends_events_to_a_sink_in_process(capsys):
    seen = []
    progress.set_sink(seen.append)
    try:
        progress.Reporter(2, label="m").begin()
    finally:
        progress.set_sink(None)
    assert seen == [{"event": "begin", "model": "m", "epochs": 2}] and capsys.readouterr().out == ""


def test_model_label_comes_from_the_kfp_executor_input():
    executor_input = {"inputs": {"parameterValues": {"model_config": {"family": "basic", "name": "basic-narrow"}}}}
    argv = ["executor_main.py", "--executor_input", json.dumps(executor_input), "--function_to_execute", "train"]
    assert progress.model_label(argv) == "basic-narrow"
    executor_input["inputs"]["parameterValues"]["model_config"] = {"family": "resnet50"}
    assert progress.model_label(["x", "--executor_input", json.dumps(executor_input)]) == "resnet50"
    assert progress.model_label(["pytest"]) is None
    assert progress.model_label(["x", "--executor_input", "{}"]) is None


# --- the parent's side: lines, tasks, bars ----------------------------------------------------


def test_line_router_keeps_partial_lines_per_thread():
    got = []
    router = con.LineRouter(lambda line, thread: got.append((line, thread)))
    barrier = threading.Barrier(2)

    def task(name):
        for i in range(50):
            router.write("    ")  # kfp.local's indented print: indent and line in two writes
            if i == 0:
                barrier.wait()
            router.write(f"{name} line {i}\n")

    threads = [threading.Thread(target=task, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    router.write("no newline")
    router.drain()
    by_thread = {}
    for line, thread in got[:-1]:
        by_thread.setdefault(thread, []).append(line)
    assert sorted(len(v) for v in by_thread.values()) == [50, 50]
    for lines in by_thread.values():
        name = lines[0].split()[0]
        assert lines == [f"    {name} line {i}" for i in range(50)]
    assert got[-1][0] == "no newline"


KFP_TRANSCRIPT = """\
13:36:11.424 - INFO - Executing task 'preprocess'
13:36:11.424 - INFO - Streamed logs:
    [KFP Executor 2026-11-28 13:36:12,033 INFO]: Got executor_input:
    {
        "inputs": {}
    }
    [KFP Executor 2026-11-28 13:36:16,568 INFO]: class balance: train 49.2% malignant
    [KFP Executor 2026-11-28 13:36:16,569 WARNING]: 2 byte-identical images (train/val or within one split)
13:36:18.458 - INFO - Task 'preprocess' finished with status SUCCESS
13:36:18.466 - INFO - Executing task 'train'
    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    E0000 00:00:1795872990.844419   18054 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error
{progress}
13:45:20.144 - INFO - Task 'train' finished with status SUCCESS
2026-11-28 13:51:19,690 INFO root: Skipping conditional task deploy-enabled (condition evaluated to False)
"""


def _progress_lines(name: str, epochs: int) -> str:
    lines = [progress.MARKER + json.dumps({"event": "begin", "model": name, "epochs": epochs})]
    for e in range(1, epochs + 1):
        lines.append(
            progress.MARKER
            + json.dumps(
                {"event": "epoch", "model": name, "epochs": epochs, "epoch": e, "metrics": {"val_auc": 0.5 + e / 100}}
            )
        )
    lines.append(progress.MARKER + json.dumps({"event": "end", "model": name, "epochs": epochs, "epoch": epochs}))
    return "\n".join("    " + line for line in lines)


def test_watcher_shows_a_line_per_task_and_a_few_progress_lines():
    console, out, err = plain_console()
    watcher = con.TaskWatcher(console, clock=iter(range(0, 1000, 7)).__next__)
    for line in KFP_TRANSCRIPT.replace("{progress}", _progress_lines("basic", 10)).splitlines():
        watcher.feed(line, thread=1)
    shown = err.getvalue().splitlines()
    assert [line[10:] for line in shown] == [
        "preprocess           started",
        "preprocess: warning: 2 byte-identical images (train/val or within one split)",
        "preprocess           done in 7.0 s",
        "train                started",
        "basic: epoch 2/10, val AUC 0.520",
        "basic: epoch 4/10, val AUC 0.540",
        "basic: epoch 6/10, val AUC 0.560",
        "basic: epoch 8/10, val AUC 0.580",
        "basic: epoch 10/10, val AUC 0.600",
        "train basic          done in 7.0 s",
    ]
    assert not any(ALARMING.search(line) for line in shown if "byte-identical" not in line)
    assert out.getvalue() == ""


def test_watcher_follows_parallel_tasks_by_thread_and_new_fits():
    console, _, err = plain_console()
    watcher = con.TaskWatcher(console)
    watcher.feed("10:00:00.000 - INFO - Executing task 'train'", thread=1)
    watcher.feed("10:00:00.001 - INFO - Executing task 'train'", thread=2)
    for t, name in ((1, "basic"), (2, "narrow")):
        for line in _progress_lines(name, 2).splitlines():
            watcher.feed(line, thread=t)
    # crossval: a second fit starts again at epoch 1; early stopping ends a fit short of its epochs
    for line in _progress_lines("basic", 5).splitlines()[:3]:
        watcher.feed(line, thread=1)
    watcher.feed("10:00:09.000 - INFO - Task 'train' finished with status SUCCESS", thread=2)
    watcher.feed("10:00:09.000 - INFO - Task 'train' finished with status SUCCESS", thread=1)
    text = err.getvalue()
    assert "basic: epoch 2/2" in text and "narrow: epoch 2/2" in text
    assert "basic (fit 2): stopped early after epoch 2/5" in text
    assert re.search(r"train narrow +done in", text) and re.search(r"train basic +done in", text)


def test_a_failed_task_shows_its_last_lines_without_noise(tmp_path):
    console, _, err = plain_console()
    watcher = con.TaskWatcher(console)
    watcher.feed("10:00:00.000 - INFO - Executing task 'train'", thread=1)
    watcher.feed("    E0000 00:00:1.0   1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error", thread=1)
    for i in range(40):
        watcher.feed(f"    line {i}", thread=1)
    watcher.feed("    ValueError: unknown model family 'nope'", thread=1)
    watcher.report_failure(
        RuntimeError("Task \x1b[96m'train'\x1b[0m finished with status FAILURE"), tmp_path / "run.log"
    )
    text = err.getvalue()
    assert re.search(r"train +FAILED after", text)
    assert "| ValueError: unknown model family 'nope'" in text and "| line 39" in text
    assert "| line 16" in text and "| line 15" not in text  # the last 25 lines
    assert "cuInit" not in text and "\x1b[" not in text
    assert "error: Task 'train' finished with status FAILURE" in text
    assert f"the whole log: {tmp_path / 'run.log'}" in text


def test_progress_bar_on_a_terminal():
    console, _, err = plain_console(bars=True)
    progress_view = con.ModelProgress(console)
    for line in _progress_lines("basic", 3).splitlines():
        progress_view.event(progress.parse(line))
    progress_view.close()
    text = err.getvalue()
    assert "basic: " in text and "3/3 epochs" in text and "val AUC 0.530" in text


def test_duration():
    assert [con.duration(s) for s in (0.42, 12.4, 62, 3725)] == ["0.4 s", "12 s", "1 min 2 s", "1 h 2 min"]


# --- the session: what goes where ---------------------------------------------------------------


def test_session_sends_prints_and_logs_to_the_log(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr, logging.getLogger().handlers[:]
    path = tmp_path / "logs" / "run.log"
    with con.Session(path, out=out, err=err) as session:
        print("a task's output")
        print("\x1b[96mcoloured\x1b[0m", file=sys.stderr)
        logging.getLogger("kfp.local").info("an info line")
        session.console.status("our line")
        session.console.result("the table")
    assert (sys.stdout, sys.stderr, logging.getLogger().handlers) == saved
    assert err.getvalue() == "our line\n" and out.getvalue() == "the table\n"
    log = path.read_text()
    for text in ("a task's output", "coloured", "an info line", "[console] our line", "[console] the table"):
        assert text in log
    assert "\x1b[" not in log


def test_session_verbose_shows_everything_and_logs_it(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    with con.Session(tmp_path / "run.log", verbose=True, out=out, err=err):
        print("a task's output")
        logging.getLogger("x").info("an info line")
    assert "a task's output" in out.getvalue() and "an info line" in err.getvalue()
    assert "a task's output" in (tmp_path / "run.log").read_text()


def test_session_logs_an_exception_and_names_the_log(tmp_path):
    err = io.StringIO()
    with pytest.raises(KeyError):
        with con.Session(tmp_path / "run.log", out=io.StringIO(), err=err):
            raise KeyError("boom")
    assert "KeyError: 'boom'" in (tmp_path / "run.log").read_text()
    assert err.getvalue() == f"the whole log: {tmp_path / 'run.log'}\n"


def test_fd_to_file_catches_what_c_code_writes(tmp_path, capfd):
    path = tmp_path / "c.log"
    with con.fd_to_file(2, path):
        os.write(2, b"I0000 written by C++ to fd 2\n")
    os.write(2, b"after\n")
    assert path.read_text() == "I0000 written by C++ to fd 2\n"
    assert capfd.readouterr().err == "after\n"


def test_startup_log_is_under_the_workdir_or_the_temp_dir(tmp_path):
    assert con.startup_log(tmp_path, "serve") == tmp_path / "logs" / "serve.log"
    elsewhere = con.startup_log(tmp_path / "missing", "serve")
    assert elsewhere is not None and not (tmp_path / "missing").exists()


# --- the command line ---------------------------------------------------------------------------


def test_verbose_flag_before_or_after_the_command():
    from pipelines.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-v", "run"]).verbose and parser.parse_args(["run", "-v"]).verbose
    assert not parser.parse_args(["run"]).verbose and parser.parse_args(["serve", "--verbose"]).verbose


def test_serve_startup_line_is_plain():
    from pipelines.cli import ConsoleFormatter
    from pipelines.commands.model_use import _QuietUvicornStart, _StartupLine

    fmt = ConsoleFormatter("%(message)s")
    record = logging.LogRecord(
        "components.core.serving.app",
        logging.WARNING,
        "",
        0,
        "loaded %s version %s; serving on http://%s:%d",
        ("m", "1", "127.0.0.1", 8080),
        None,
    )
    assert _StartupLine().filter(record)
    assert fmt.format(record) == "loaded m version 1; serving on http://127.0.0.1:8080"
    other = logging.LogRecord("x", logging.WARNING, "", 0, "disk almost full", (), None)
    assert _StartupLine().filter(other) and fmt.format(other) == "WARNING disk almost full"
    quiet = _QuietUvicornStart()
    assert not quiet.filter(
        logging.LogRecord("uvicorn.error", logging.INFO, "", 0, "Started server process [%d]", (1,), None)
    )
    assert quiet.filter(logging.LogRecord("uvicorn.error", logging.INFO, "", 0, "Uvicorn running on %s", ("x",), None))


# --- `skin-cancer run` end to end ---------------------------------------------------------------


def test_run_console_is_for_a_person(demo_raw, tmp_path):
    """The main job's console on a healthy run: a line per task, the epochs, the table and where
    to look; no error or warning line; everything else in the log file."""
    work = tmp_path / "work"
    done = run_cli(
        "run",
        "--data",
        str(demo_raw),
        "--workdir",
        str(work),
        "--models",
        json.dumps(TINY),
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--val-fraction",
        "0.25",
        "--summary-json",
        str(tmp_path / "summary.json"),
        cwd=Path(__file__).parents[2],
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    lines = console.splitlines()
    assert [line for line in lines if ALARMING.search(line)] == []
    for task in ("fingerprint-data", "preprocess", "select-and-register"):
        assert re.search(rf"^\d\d:\d\d:\d\d  {task} +started$", console, re.M), console
        assert re.search(rf"^\d\d:\d\d:\d\d  {task} +done in ", console, re.M), console
    assert re.search(r"^\d\d:\d\d:\d\d  train tiny +done in ", console, re.M), console
    assert re.search(r"tiny: epoch 2/2, val AUC \d\.\d{3}$", console, re.M), console
    table = lines.index(next(line for line in lines if line.startswith("model ")))
    assert lines[table + 1].startswith("tiny ")
    assert "where to look:" in lines
    log = Path(re.search(r"^  log +(\S+)$", console, re.M).group(1))
    assert log.parent == work.resolve() / "logs"
    assert re.search(r"^  MLflow +mlflow ui --backend-store-uri sqlite:///", console, re.M)
    assert re.search(r"^  summary json +\S+summary\.json$", console, re.M)
    assert re.search(r"^  serve it +skin-cancer serve --workdir \S+$", console, re.M)
    assert len(lines) < 40, console
    text = log.read_text()
    assert "Got executor_input" in text and progress.MARKER in text  # the detail that was kept off the console
    assert "Executing task 'train'" in text and "[console] where to look:" in text
    assert "have no effect in the current local runner" in text  # kfp.local's Python warnings
    assert json.loads((tmp_path / "summary.json").read_text())["log"] == str(log)


def test_run_with_a_failing_task_shows_the_error_and_the_log(tmp_path):
    raw = tmp_path / "raw"
    (raw / "train" / "benign").mkdir(parents=True)
    (raw / "train" / "benign" / "a.jpg").write_bytes(b"not really a jpeg")
    done = run_cli("run", "--data", str(raw), "--workdir", str(tmp_path / "work"), cwd=Path(__file__).parents[2])
    console = done.stdout + done.stderr
    assert done.returncode == 1, console
    assert re.search(r"^\d\d:\d\d:\d\d  \S+ +FAILED after ", console, re.M), console
    assert "| " in console and "DataError" in console  # the task's own last lines
    log = Path(re.search(r"^the whole log: (\S+)$", console, re.M).group(1))
    assert log.is_file() and "Executing task" in log.read_text()


def test_run_takes_its_training_parameters_from_the_preset_and_the_flags_win():
    from pipelines.cli import build_parser
    from pipelines.commands.local_jobs import training_parameters
    from pipelines.presets import LOCAL_CPU, LOCAL_CPU_ENSEMBLE

    parser = build_parser()
    plain = training_parameters(parser.parse_args(["run"]))
    assert plain == {k: LOCAL_CPU[k] for k in ("models", "image_size", "epochs", "batch_size", "learning_rate")}
    ensemble = training_parameters(parser.parse_args(["run", "--preset", "local-cpu-ensemble", "--epochs", "3"]))
    assert ensemble["models"] == LOCAL_CPU_ENSEMBLE["models"] and len(ensemble["models"]) == 3
    assert ensemble["epochs"] == 3  # the flag, not the preset's 6
    tiny = training_parameters(parser.parse_args(["run", "--preset", "local-cpu-ensemble", "--models", "basic"]))
    assert tiny["models"] == [{"family": "basic"}]

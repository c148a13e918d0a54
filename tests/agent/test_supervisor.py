"""The supervisor and its launch on their own: real processes, real signals, no server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appyard.agent.handle import adopt, kill_orphan
from appyard.agent.launch import (
    SUPERVISOR,
    SpawnError,
    job_for,
    launch,
    make_task_files,
    sigterm_blocked,
)
from appyard.agent.state import WorkDir
from appyard.agent.supervisor.app import EXEC_FAILED
from appyard.agent.supervisor.lines import CUT_MARK
from tests.agent.helpers import (
    alive,
    app_texts,
    launch_snippet,
    log_lines,
    new_task,
    wait_for,
    wait_gone,
)


@pytest.mark.parametrize("code", [0, 3])
def test_lines_in_order_and_the_exit_code(tmp_path: Path, code: int) -> None:
    td = new_task(tmp_path)
    handle = launch_snippet(
        td,
        f"""
        import sys
        for i in range(500):
            print(f"line {{i}}")
        print("to stderr", file=sys.stderr)
        sys.exit({code})
        """,
    )
    assert handle.app_pid and alive(handle.app_pid)
    assert handle.wait(15)
    info = td.exit_info()
    assert info is not None
    assert (info.exit_code, info.stop_requested, info.killed, info.spawned) == (
        code,
        False,
        False,
        True,
    )
    records = log_lines(td)
    out = [r["text"] for r in records if r["level"] == "info"]
    assert out == [f"line {i}" for i in range(500)]
    assert [r["text"] for r in records if r["level"] == "error"] == ["to stderr"]
    assert all(r["t"].endswith("Z") for r in records)
    pids = td.pids()
    assert pids["app_pid"] == handle.app_pid and pids["supervisor_pid"] == handle.supervisor_pid


def test_levels_long_lines_and_odd_bytes(tmp_path: Path) -> None:
    td = new_task(tmp_path)
    handle = launch_snippet(
        td,
        r"""
        import logging, sys
        logging.basicConfig()
        logging.warning("careful")
        print("INFO:     uvicorn style", file=sys.stderr)
        print("2024-01-01 10:00:00,000 - DEBUG - dated")
        sys.stdout.buffer.write(b"bad \xff byte\r\n")
        print("x" * 100_000)
        print("after the long one")
        sys.stdout.write("no newline at the end")
        """,
    )
    assert handle.wait(15)
    records = log_lines(td)
    by_text = {r["text"][:20]: r for r in records}
    assert by_text["WARNING:root:careful"]["level"] == "warning"
    assert by_text["INFO:     uvicorn st"]["level"] == "info"
    assert by_text["2024-01-01 10:00:00,"]["level"] == "debug"
    assert by_text["bad \ufffd byte"]["text"] == "bad \ufffd byte"
    long = by_text["x" * 20]
    assert len(long["text"]) == 65536 and long["text"].endswith(CUT_MARK)
    assert app_texts(td)[-2:] == ["after the long one", "no newline at the end"]


def test_app_env_and_cwd(tmp_path: Path) -> None:
    td = new_task(tmp_path)
    handle = launch_snippet(
        td,
        """
        import os, signal
        print(os.getcwd())
        print(os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid())
        print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        print(os.environ["PYTHONUNBUFFERED"])
        """,
    )
    assert handle.wait(15)
    assert app_texts(td) == [str(td.work), "True True", "True", "1"]


def test_stop_with_a_handled_sigterm(tmp_path: Path) -> None:
    td = new_task(tmp_path)
    handle = launch_snippet(
        td,
        """
        import signal, sys, time
        def bye(*_):
            print("got SIGTERM")
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("ready")
        while True:
            time.sleep(1)
        """,
        grace_s=30,
    )
    wait_for(lambda: "ready" in app_texts(td), 15, "the app to print ready")
    assert handle.stop()
    assert handle.wait(15)  # it left on SIGTERM: the 30 s grace would outlast this wait
    info = td.exit_info()
    assert info is not None
    assert (info.exit_code, info.stop_requested, info.killed) == (0, True, False)
    assert app_texts(td) == ["ready", "got SIGTERM"]
    assert handle.app_pid is not None and not alive(handle.app_pid)


def test_stop_kills_a_stubborn_app_and_its_child_after_the_grace(tmp_path: Path) -> None:
    td = new_task(tmp_path)
    handle = launch_snippet(
        td,
        """
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
        print(child.pid)
        while True:
            time.sleep(1)
        """,
        grace_s=1.0,
    )
    wait_for(lambda: app_texts(td), 15, "the app to print its child's pid")
    child = int(app_texts(td)[0])
    app = handle.app_pid
    assert app is not None and alive(child) and os.getpgid(child) == app
    t0 = time.monotonic()
    assert handle.stop()
    assert handle.wait(15)
    elapsed = time.monotonic() - t0
    assert elapsed > 0.9, f"killed after {elapsed:.2f} s, before its 1 s grace period"
    info = td.exit_info()
    assert info is not None
    assert (info.exit_code, info.stop_requested, info.killed) == (-signal.SIGKILL, True, True)
    wait_gone(app, child)
    notes = [r["text"] for r in log_lines(td) if r.get("src") == "supervisor"]
    assert notes[0].startswith("stop requested") and "SIGKILL" in notes[1]


def test_exit_kills_what_is_left_in_the_group(tmp_path: Path) -> None:
    td = new_task(tmp_path)
    handle = launch_snippet(
        td,
        """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                 stdout=subprocess.DEVNULL)
        print(child.pid)
        """,
    )
    assert handle.wait(15)
    info = td.exit_info()
    assert info is not None and info.exit_code == 0 and not info.stop_requested
    wait_gone(int(app_texts(td)[0]))


def test_a_program_that_cannot_be_executed(tmp_path: Path) -> None:
    td = new_task(tmp_path)
    with pytest.raises(SpawnError, match="cannot execute /no/such/program"):
        launch(td, ["/no/such/program", "x"], dict(os.environ), 5.0)
    info = td.exit_info()
    assert info is not None
    assert info.exit_code == EXEC_FAILED and not info.spawned
    assert info.error and "No such file" in info.error
    assert [r["level"] for r in log_lines(td)] == ["error"]


def test_supervisor_ignores_hangup_and_interrupt(tmp_path: Path) -> None:
    td = new_task(tmp_path)
    handle = launch_snippet(td, "import time\nprint('up')\ntime.sleep(600)")
    wait_for(lambda: app_texts(td), 15, "the app to start")
    os.kill(handle.supervisor_pid, signal.SIGHUP)
    os.kill(handle.supervisor_pid, signal.SIGINT)
    assert not handle.wait(0.3)  # a short look: it must still be there
    assert handle.app_pid is not None and alive(handle.app_pid)
    handle.stop()
    assert handle.wait(15)


def test_early_sigterm_is_not_lost(tmp_path: Path) -> None:
    """A stop sent once the job is written, while the supervisor is still starting, stops the
    app at once."""
    td = new_task(tmp_path)
    job = job_for(td, [sys.executable, "-c", "import time; time.sleep(600)"], os.environ, 30.0)
    make_task_files(td)
    job_r, job_w = os.pipe()
    status_r, status_w = os.pipe()
    cmd = [sys.executable, "-I", "-S", str(SUPERVISOR)]
    cmd += ["--job-fd", str(job_r), "--status-fd", str(status_w)]
    with sigterm_blocked():  # as the agent starts every supervisor
        sup = subprocess.Popen(cmd, pass_fds=(job_r, status_w), start_new_session=True)
    os.close(job_r)
    os.close(status_w)
    os.write(job_w, job)  # all of it: it fits in the pipe
    sup.send_signal(signal.SIGTERM)  # long before its handler exists
    assert sup.wait(15) == 0
    os.close(job_w)
    os.close(status_r)
    info = td.exit_info()
    assert info is not None and info.stop_requested and info.exit_code == -signal.SIGTERM


def test_supervisor_usage_error(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-I", "-S", str(SUPERVISOR), "--bogus"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "supervisor:" in r.stderr


def test_supervisor_starts_fast_and_imports_no_appyard(tmp_path: Path) -> None:
    """It runs as a file with -I -S: nothing of appyard, json or signal is imported."""
    r = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", str(SUPERVISOR), "--bogus"],
        capture_output=True,
        text=True,
    )
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.startswith(("appyard", "json", "re", "enum"))}
    assert {"signal", "subprocess", "threading"}.isdisjoint(imported)


def test_exit_json_is_written_while_no_agent_watches(tmp_path: Path) -> None:
    """The launcher is a separate process, killed -9; the supervisor still records the end."""
    gate = tmp_path / "gate"
    td = new_task(tmp_path / "work")
    launcher = _agent_side(
        td.path.parent.parent,
        1,
        f"""
        import os, time
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.02)
        raise SystemExit(5)
    """,
    )
    pids = json.loads(launcher.stdout.readline())  # type: ignore[union-attr]
    launcher.kill()
    launcher.wait()
    assert alive(pids["supervisor"]) and alive(pids["app"])
    gate.touch()
    wait_for(td.exit_file.exists, 15, "exit.json")
    info = td.exit_info()
    assert info is not None and info.exit_code == 5
    wait_gone(pids["supervisor"], pids["app"])


def _agent_side(root: Path, task_id: int, code: str) -> subprocess.Popen[str]:
    """A stand-in agent process: launches one app, prints the pids, then sleeps."""
    script = f"""
import json, sys, time, textwrap
from pathlib import Path
from tests.agent.helpers import launch_snippet, new_task
td = new_task(Path({str(root)!r}), {task_id})
h = launch_snippet(td, textwrap.dedent({code!r}), grace_s=2.0)
print(json.dumps({{"supervisor": h.supervisor_pid, "app": h.app_pid}}), flush=True)
time.sleep(600)
"""
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )


def test_agent_killed_app_lives_on_and_is_readopted(tmp_path: Path) -> None:
    from appyard.agent.state import Found

    launcher = _agent_side(
        tmp_path,
        7,
        """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: (print("bye"), sys.exit(0)))
        print("up")
        while True:
            time.sleep(1)
    """,
    )
    pids = json.loads(launcher.stdout.readline())  # type: ignore[union-attr]
    launcher.kill()  # kill -9 of the agent side
    launcher.wait()
    assert alive(pids["supervisor"]) and alive(pids["app"])

    (found,) = WorkDir(tmp_path).scan()
    assert found.found is Found.RUNNING and found.state.task_id == 7
    wait_for(lambda: app_texts(found.dir) == ["up"], 15, "the app's handler to be set")
    handle = adopt(found.dir, found.state)
    assert handle is not None
    assert (handle.supervisor_pid, handle.app_pid) == (pids["supervisor"], pids["app"])
    assert not handle.wait(0)
    assert handle.stop()
    assert handle.wait(15)  # noticed through the pidfd, though it is not our child
    info = found.dir.exit_info()
    assert info is not None and info.stop_requested and info.exit_code == 0
    assert app_texts(found.dir) == ["up", "bye"]
    (again,) = WorkDir(tmp_path).scan()
    assert again.found is Found.ENDED


def test_lost_supervisor_and_a_reused_pid(tmp_path: Path) -> None:
    from appyard.agent.state import Found

    td = new_task(tmp_path, 3)
    handle = launch_snippet(td, "import time\nprint('up')\ntime.sleep(600)")
    wait_for(lambda: app_texts(td), 15, "the app to start")
    os.kill(handle.supervisor_pid, signal.SIGKILL)
    assert handle.wait(15)
    (found,) = WorkDir(tmp_path).scan()
    assert found.found is Found.LOST
    assert handle.app_pid is not None and alive(handle.app_pid)
    assert kill_orphan(found.state)
    wait_gone(handle.app_pid)
    # a pid whose start time does not match is never adopted (nor signalled)
    state = found.state
    state.supervisor_pid, state.supervisor_start = os.getpid(), 1
    state.app_pid, state.app_start = os.getpid(), 1
    assert adopt(found.dir, state) is None
    assert not kill_orphan(state)

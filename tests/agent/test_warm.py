"""Launches through a warm (pre-started) supervisor: what the app gets, and what the warm one is.

A warm launch must be indistinguishable from a cold one (``launch.launch``) for the app and for
whoever reads the task's files later; the warm supervisor itself must hold nothing it should
not, survive no agent, and take no stop that was not meant for its task.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from appyard.agent.handle import adopt
from appyard.agent.launch import SUPERVISOR, SpawnError, launch
from appyard.agent.launcher import Launcher
from appyard.agent.state import Found, WorkDir
from appyard.agent.supervisor.job import Job, decode_job, encode_job
from tests.agent.helpers import (
    alive,
    app_texts,
    launch_snippet,
    log_lines,
    new_task,
    wait_for,
    wait_gone,
)

ROOT = Path(__file__).parents[2]


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _has(mask: str, signum: int) -> bool:
    return bool(int(mask, 16) >> (signum - 1) & 1)


def _waiting(pid: int) -> bool:
    """Its SIGTERM handler is in place, no signal is pending, and it sleeps (in its poll)."""
    try:
        st = _status(pid)
    except FileNotFoundError:
        return False
    return (
        _has(st["SigCgt"], signal.SIGTERM)
        and not _has(st["SigBlk"], signal.SIGTERM)
        and int(st["SigPnd"], 16) == 0
        and int(st["ShdPnd"], 16) == 0
        and st["State"].startswith("S")
    )


def ready(launcher: Launcher) -> int:
    """The pid of the launcher's warm supervisor, once it waits for its job."""
    pid: int = wait_for(lambda: launcher.warm_pid, 15, "a warm supervisor")
    wait_for(lambda: _waiting(pid), 15, "the warm supervisor to wait for its job")
    return pid


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    launcher = Launcher()
    launcher.prime()
    yield launcher
    launcher.close()


# what the app sees of its process: everything a supervisor hands down to it
PROBE = r"""
import json, os, sys
with open("/proc/self/environ", "rb") as f:
    environ = f.read()
with open("/proc/self/status") as f:
    status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
pid = os.getpid()
fds = []
for fd in sorted(os.listdir("/proc/self/fd")):
    try:
        fds.append((fd, os.readlink(f"/proc/self/fd/{fd}")[:4]))
    except FileNotFoundError:  # the one listdir used
        pass
print(json.dumps({
    "environ": environ.hex(),
    "argv": sys.argv,
    "executable": sys.executable,
    "cwd": os.getcwd(),
    "own_group": os.getpgid(0) == pid,
    "own_session": os.getsid(0) == pid,
    "ppid": os.getppid(),
    "parent_session": os.getsid(os.getppid()),
    "blocked": status["SigBlk"],
    "ignored": status["SigIgn"],
    "fds": fds,
    "stdin": os.readlink("/proc/self/fd/0"),
}))
"""

#: the app's locale variables; None: the agent's own, as they are
LOCALES: dict[str, dict[str, str] | None] = {
    "as-is": None,
    "none": {},
    "lang-c": {"LANG": "C"},
    "lc-ctype-c": {"LC_CTYPE": "C", "LANG": "C.UTF-8"},
    "unknown-locale": {"LANG": "xx_YY.UTF-8"},
    "lc-all-c": {"LC_ALL": "C"},
}


@pytest.mark.parametrize("locale", list(LOCALES))
def test_the_app_gets_exactly_what_a_cold_launch_gives_it(
    tmp_path: Path, launcher: Launcher, locale: str
) -> None:
    """Same environment (bytes and order), argv, PATH lookup, cwd, session, fds, signals."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pyapp").symlink_to(sys.executable)  # found through the app's PATH only
    env = dict(os.environ)
    wanted = LOCALES[locale]
    if wanted is not None:
        for name in ("LC_ALL", "LC_CTYPE", "LANG"):
            env.pop(name, None)
        env.update(wanted)
    env.update(
        {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "PYTHONUNBUFFERED": "1",
            "ODD": os.fsdecode(b"caf\xc3\xa9 \xff\x01 = x"),
            "EMPTY": "",
        }
    )
    argv = ["pyapp", "-c", PROBE, "ünï", os.fsdecode(b"\xfe")]
    seen = {}
    for how in ("cold", "warm"):
        td = new_task(tmp_path / how)
        if how == "cold":
            handle = launch(td, argv, env, 5.0)
        else:
            warm_pid = ready(launcher)
            handle = launcher.launch(td, argv, env, 5.0)
            assert handle.supervisor_pid == warm_pid  # it did go through the warm one
        assert handle.wait(15)
        info = td.exit_info()
        assert info is not None and info.exit_code == 0, log_lines(td)
        (line,) = app_texts(td)
        got = json.loads(line)
        assert got.pop("cwd") == str(td.work)
        assert got.pop("ppid") == handle.supervisor_pid
        # the supervisor has a session of its own, and the app another one
        assert got.pop("parent_session") == handle.supervisor_pid != handle.app_pid
        seen[how] = got
    assert seen["warm"] == seen["cold"]
    cold = seen["cold"]
    assert cold["own_group"] and cold["own_session"] and cold["stdin"] == "/dev/null"
    assert cold["fds"] == [["0", "/dev"], ["1", "pipe"], ["2", "pipe"]]
    environ = bytes.fromhex(cold["environ"]).split(b"\0")
    assert b"ODD=caf\xc3\xa9 \xff\x01 = x" in environ and b"EMPTY=" in environ
    if locale in ("none", "lang-c", "lc-ctype-c", "unknown-locale"):
        # the interpreter of a cold supervisor coerced the C locale: the warm one must too
        assert any(e.startswith(b"LC_CTYPE=C.") for e in environ), environ
    if locale == "lc-all-c":
        assert not any(e.startswith(b"LC_CTYPE=") for e in environ)


def test_job_encoding_round_trip(tmp_path: Path) -> None:
    argv = ["prog", "a b", "", os.fsdecode(b"\xff"), "ü"]
    env = {"A": "1", "B": "x=y", "EMPTY": "", "Ü": os.fsdecode(b"\xfe")}
    data = encode_job(Job("supervisor.log", str(tmp_path), "work", 2.5, argv, env))
    head, _, body = data.partition(b"\n")
    assert int(head) == len(body)
    job = decode_job(body)
    # paths are made absolute where the agent's own working folder is known
    assert (job.log, job.task_dir, job.cwd, job.grace) == (
        os.path.abspath("supervisor.log"),
        str(tmp_path),
        os.path.abspath("work"),
        2.5,
    )
    assert job.argv == argv and list(job.env.items()) == list(env.items())
    # what exec refuses is no job
    for bad_argv, bad_env in [
        (argv, {"A=B": "1"}),
        (argv, {"A": "1\0"}),
        (argv, {"": "1"}),
        (["prog", "a\0"], env),
        ([], env),
    ]:
        with pytest.raises(ValueError):
            encode_job(Job("l", "t", "w", 1.0, bad_argv, bad_env))


def test_a_command_no_program_can_get_is_a_spawn_error(tmp_path: Path, launcher: Launcher) -> None:
    """Cold or warm, it fails before any supervisor has it; the waiting one stays for the next."""
    pid = ready(launcher)
    argv = [sys.executable, "-c", "print(1)\0"]
    for how, start in (("cold", launch), ("warm", launcher.launch)):
        td = new_task(tmp_path / how)
        with pytest.raises(SpawnError, match="NUL"):
            start(td, argv, dict(os.environ), 1.0)
    assert launcher.warm_pid == pid


def test_a_warm_supervisor_holds_only_its_pipes(launcher: Launcher) -> None:
    pid = ready(launcher)
    assert os.getsid(pid) == pid and os.getpgid(pid) == pid  # a session of its own
    warm = launcher._warm
    assert warm is not None and warm.pid == pid
    fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert [fds.pop(fd) for fd in (0, 1, 2)] == ["/dev/null"] * 3
    ours = {f"pipe:[{os.fstat(fd).st_ino}]" for fd in (warm.job_w, warm.status_r)}
    rest = sorted(fds.values())
    for target in ours:  # the other ends of the agent's job and status pipes ...
        rest.remove(target)
    assert len(rest) == 2 and rest[0] == rest[1]  # ... and both ends of its own wakeup pipe
    assert rest[0].startswith("pipe:")


@pytest.mark.parametrize("sent", [b"", b"1000\nappyard-job-1\0/tmp/x"])
def test_eof_before_a_whole_job_ends_it_quietly(tmp_path: Path, sent: bytes) -> None:
    """The agent exited (or died mid-write): exit 0, no report, nothing written anywhere."""
    job_r, job_w = os.pipe()
    status_r, status_w = os.pipe()
    cmd = [sys.executable, "-I", "-S", str(SUPERVISOR)]
    cmd += ["--job-fd", str(job_r), "--status-fd", str(status_w)]
    sup = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(job_r, status_w),
        start_new_session=True,
    )
    os.close(job_r)
    os.close(status_w)
    os.write(job_w, sent)
    os.close(job_w)
    out, err = sup.communicate(timeout=15)
    assert (sup.returncode, out, err) == (0, b"", b"")
    assert os.read(status_r, 100) == b""
    os.close(status_r)
    assert list(tmp_path.iterdir()) == []


def test_a_warm_supervisor_imports_no_more_than_a_cold_one() -> None:
    """Its start-up is off the launch path, but it still must not import json, re, enum..."""
    job_r, job_w = os.pipe()
    status_r, status_w = os.pipe()
    cmd = [sys.executable, "-I", "-S", "-X", "importtime", str(SUPERVISOR)]
    cmd += ["--job-fd", str(job_r), "--status-fd", str(status_w)]
    sup = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, pass_fds=(job_r, status_w))
    for fd in (job_r, status_w, job_w):
        os.close(fd)
    _, err = sup.communicate(timeout=15)
    os.close(status_r)
    assert sup.returncode == 0
    imported = {line.split("|")[-1].strip() for line in err.splitlines() if "|" in line}
    assert not {m for m in imported if m.startswith(("appyard", "json", "re", "enum"))}
    assert {"signal", "subprocess", "threading", "locale"}.isdisjoint(imported)


def test_the_zygote_imports_no_socket_module() -> None:
    """It starts once per agent, but alongside the first tasks: ``socket`` would cost it enum
    and selectors (~10 ms of CPU), so it speaks to the agent through ``_socket``."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cmd = [sys.executable, "-I", "-S", "-X", "importtime", str(SUPERVISOR)]
    cmd += ["--zygote-fd", str(theirs.fileno())]
    zygote = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, pass_fds=(theirs.fileno(),))
    theirs.close()
    ours.close()  # EOF: it exits
    _, err = zygote.communicate(timeout=15)
    assert zygote.returncode == 0
    imported = {line.split("|")[-1].strip() for line in err.splitlines() if "|" in line}
    assert "supervisor.zygote" in imported
    banned = ("appyard", "json", "re", "enum", "socket", "selectors")
    assert not {m for m in imported if m.startswith(banned)}


def test_close_ends_the_warm_supervisor(tmp_path: Path, launcher: Launcher) -> None:
    pid = ready(launcher)
    warm = launcher._warm
    assert warm is not None
    launcher.close()
    assert not warm.killed  # it left on its own (EOF), it was not killed
    assert not alive(pid) and launcher.warm_pid is None
    # launches after that are cold ones, and start no warm supervisor
    td = new_task(tmp_path)
    handle = launch_snippet(td, "print('cold')", launcher=launcher)
    assert handle.supervisor_pid != pid
    assert handle.wait(15) and app_texts(td) == ["cold"]
    assert launcher.warm_pid is None


def test_a_warm_supervisor_exits_when_its_agent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import time
        from appyard.agent.launcher import Launcher
        from tests.support import wait_for
        launcher = Launcher()
        launcher.prime()
        warm = wait_for(lambda: launcher.warm_pid, 15, "a warm supervisor")
        print(warm, launcher.zygote_pid, flush=True)
        time.sleep(600)
        """
    )
    agent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT)
    assert agent.stdout is not None
    pid, zygote = (int(x) for x in agent.stdout.readline().split())
    assert alive(pid) and alive(zygote)
    agent.kill()  # kill -9: nobody closes the pipe (or the zygote's socket) but the kernel
    agent.wait()
    wait_gone(pid, zygote)


def _ppid(pid: int) -> int:
    return int(_status(pid)["PPid"])


def test_a_burst_of_launches_is_forked_by_the_zygote(tmp_path: Path, launcher: Launcher) -> None:
    """One interpreter start-up per agent: each supervisor is forked by the zygote, also when
    launches come faster than a warm one is made ahead; the zygote reaps them when they end."""
    ready(launcher)
    zygote = launcher.zygote_pid
    assert zygote is not None
    handles = [
        launch_snippet(new_task(tmp_path, i), "import time\ntime.sleep(600)", launcher=launcher)
        for i in (1, 2, 3)
    ]
    assert len({h.supervisor_pid for h in handles}) == 3
    assert all(_ppid(h.supervisor_pid) == zygote for h in handles)
    for h in handles:
        assert h.stop() and h.wait(15)
    for h in handles:
        wait_for(lambda h=h: not os.path.exists(f"/proc/{h.supervisor_pid}"), 15, "it to be reaped")


def test_a_dead_zygote_means_supervisors_started_one_by_one(
    tmp_path: Path, launcher: Launcher
) -> None:
    ready(launcher)
    zygote = launcher.zygote_pid
    assert zygote is not None
    os.kill(zygote, signal.SIGKILL)
    wait_gone(zygote)
    for task_id in (1, 2, 3):  # the waiting one, then no zygote to fork: cold, then started
        td = new_task(tmp_path, task_id)
        handle = launch_snippet(td, f"print({task_id})", launcher=launcher)
        assert handle.wait(15) and app_texts(td) == [str(task_id)]
    assert launcher.zygote_pid is None
    pid = ready(launcher)
    assert _ppid(pid) == os.getpid()  # started by the launcher itself, as before the zygote


@pytest.mark.parametrize("when", ["starting", "idle"])
def test_sigterm_before_its_job_neither_kills_it_nor_stops_the_task(
    tmp_path: Path, launcher: Launcher, when: str
) -> None:
    """SIGTERM is blocked until its handler runs, and a SIGTERM with no job is no stop."""
    if when == "starting":  # most likely still in its interpreter's start-up
        pid: int = wait_for(lambda: launcher.warm_pid, 15, "a warm supervisor")
    else:
        pid = ready(launcher)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: _waiting(pid), 15, "the warm supervisor to wait for its job again")
    td = new_task(tmp_path)
    handle = launch_snippet(td, "print('ran')", launcher=launcher)
    assert handle.supervisor_pid == pid
    assert handle.wait(15)
    info = td.exit_info()
    assert info is not None and (info.exit_code, info.stop_requested) == (0, False)
    assert app_texts(td) == ["ran"]


def test_stop_right_after_a_warm_launch(tmp_path: Path, launcher: Launcher) -> None:
    warm_pid = ready(launcher)
    td = new_task(tmp_path)
    handle = launch_snippet(td, "import time\ntime.sleep(600)", launcher=launcher)
    assert handle.supervisor_pid == warm_pid
    assert handle.stop()
    assert handle.wait(15)
    info = td.exit_info()
    assert info is not None
    assert (info.exit_code, info.stop_requested, info.killed) == (-signal.SIGTERM, True, False)
    pids = td.pids()
    assert (pids["supervisor_pid"], pids["app_pid"]) == (warm_pid, handle.app_pid)
    assert handle.app_pid is not None
    wait_gone(handle.app_pid)


def test_the_next_warm_supervisor_is_started_after_a_launch(
    tmp_path: Path, launcher: Launcher
) -> None:
    first = ready(launcher)
    for task_id in (1, 2):
        td = new_task(tmp_path, task_id)
        handle = launch_snippet(td, f"print({task_id})", launcher=launcher)
        assert handle.wait(15) and app_texts(td) == [str(task_id)]
        if task_id == 1:
            assert handle.supervisor_pid == first
            second = ready(launcher)
            assert second != first
        else:
            assert handle.supervisor_pid == second


def test_a_dead_warm_supervisor_means_a_cold_launch(tmp_path: Path, launcher: Launcher) -> None:
    pid = ready(launcher)
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    td = new_task(tmp_path)
    handle = launch_snippet(td, "print('still runs')", launcher=launcher)
    assert handle.supervisor_pid != pid
    assert handle.wait(15) and app_texts(td) == ["still runs"]


def test_agent_killed_after_a_warm_launch_app_lives_on_and_is_readopted(tmp_path: Path) -> None:
    app = """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: (print("bye"), sys.exit(0)))
        print("up")
        while True:
            time.sleep(1)
    """
    script = f"""
import json, time, textwrap
from pathlib import Path
from appyard.agent.launcher import Launcher
from tests.agent.helpers import launch_snippet, new_task
from tests.support import wait_for
launcher = Launcher()
launcher.prime()
warm = wait_for(lambda: launcher.warm_pid, 15, "a warm supervisor")
td = new_task(Path({str(tmp_path)!r}), 7)
h = launch_snippet(td, textwrap.dedent({app!r}), grace_s=2.0, launcher=launcher)
print(json.dumps({{"warm": warm, "supervisor": h.supervisor_pid, "app": h.app_pid}}), flush=True)
time.sleep(600)
"""
    agent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT)
    assert agent.stdout is not None
    pids = json.loads(agent.stdout.readline())
    assert pids["supervisor"] == pids["warm"]
    agent.kill()
    agent.wait()
    assert alive(pids["supervisor"]) and alive(pids["app"])

    (found,) = WorkDir(tmp_path).scan()
    assert found.found is Found.RUNNING and found.state.task_id == 7
    wait_for(lambda: app_texts(found.dir) == ["up"], 15, "the app's handler to be set")
    handle = adopt(found.dir, found.state)
    assert handle is not None
    assert (handle.supervisor_pid, handle.app_pid) == (pids["supervisor"], pids["app"])
    assert handle.stop()
    assert handle.wait(15)
    info = found.dir.exit_info()
    assert info is not None and info.stop_requested and info.exit_code == 0
    assert app_texts(found.dir) == ["up", "bye"]

"""``appyard up`` for the benchmarks, started exactly as a user starts it.

``python -m appyard.cli up --port P --slots S`` with APPYARD_HOME and APPYARD_ENV_FILE in a
temporary folder; the credentials are read back from that env file, and the server's and the
agent's pids from ``up``'s children (to read their CPU time in /proc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import Up, free_port, wait_for  # noqa: E402

import appyard as ay  # noqa: E402

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Local:
    """A running ``appyard up``: its address, credentials, ids and the pids of its parts."""

    up: Up
    home: Path
    address: str
    token: str
    team_id: int
    workspace_id: int
    agent_id: int
    server_pid: int
    agent_pid: int

    def api(self) -> ay.Api:
        """A new SDK client (its own connection pool), as a user's script makes one."""
        return ay.Api(self.address, self.token)


def children(pid: int) -> list[int]:
    out: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class Cpu:
    """CPU seconds of one process: its own, and that of its children it has reaped."""

    own: float
    reaped: float


def cpu(pid: int) -> Cpu:
    """utime+stime and cutime+cstime of /proc/<pid>/stat, in seconds."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    fields = data[data.rfind(b")") + 2 :].split()
    # fields 14-17 of stat(5); here counted from field 3 (state)
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return Cpu((utime + stime) / CLOCK_TICK, (cutime + cstime) / CLOCK_TICK)


def below(pid: int) -> float:
    """CPU seconds of the processes below ``pid``: those it reaped, and its live children's
    (their own and what they reaped: the agent's supervisor zygote reaps the supervisors)."""
    total = cpu(pid).reaped
    for child in children(pid):
        with contextlib.suppress(OSError):
            c = cpu(child)
            total += c.own + c.reaped
    return total


@contextlib.contextmanager
def appyard_up(tmp: Path, slots: int) -> Iterator[Local]:
    """``appyard up --slots S`` in ``tmp``; stopped (Ctrl-C, as a user does) afterwards."""
    home, env_file = tmp / "home", tmp / "appyard.env"
    up = Up(home, env_file, free_port(), slots=slots)
    try:
        env = dotenv_values(env_file)
        up_children = wait_for(lambda: len(children(up.proc.pid)) >= 2 and children(up.proc.pid))
        server_pid = next(p for p in up_children if "appyard.server" in cmdline(p))
        agent_pid = next(p for p in up_children if "agent run" in cmdline(p))
        local = Local(
            up=up,
            home=home,
            address=str(env["SERVER_ADDRESS"]),
            token=str(env["API_TOKEN"]),
            team_id=int(str(env["TEAM_ID"])),
            workspace_id=int(str(env["WORKSPACE_ID"])),
            agent_id=int(str(env["AGENT_ID"])),
            server_pid=server_pid,
            agent_pid=agent_pid,
        )
        with local.api() as api:
            wait_for(
                lambda: any(
                    a.id == local.agent_id and a.status == "online"
                    for a in api.agent.get_list(local.team_id)
                ),
                30,
                "the agent of appyard up online",
            )
        yield local
    finally:
        if up.proc.poll() is None:
            up.interrupt(signal.SIGINT)

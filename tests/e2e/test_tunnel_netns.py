"""The server never dials an agent's machine, shown with a network the server cannot route into.

The agent runs in a network namespace of its own (``ip netns``), joined to the server's only
by a veth pair, with no route anywhere else; the server listens on the host's end of the pair.
The app serves on the namespace's own loopback, which no packet from outside can reach. So a
request into the app, and the app's page, can get there only over a connection the agent
opened from inside: its tunnel. The agent's sandbox (bubblewrap) runs as it does anywhere.

It needs root (a namespace and a veth pair); CI runs as root, and ``.ci/run`` installs
iproute2 where ``ip`` is missing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import appyard as ay
from appyard.schemas.agents import AgentInfo
from tests.support import ServerProc, World, alive, processes_of, wait_for

ECHO_MODEL = Path(ay.__file__).parent / "ecosystem" / "echo-model"
#: the /16 the test's /30 is picked from, one per run
POOL = ipaddress.IPv4Network("10.213.0.0/16")
#: /proc/net/tcp's states
LISTEN, ESTABLISHED = "0A", "01"

Endpoint = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


@dataclass
class Netns:
    """A network namespace joined to the host by a veth pair (a /30: host .1, namespace .2)."""

    name: str
    host_if: str
    host_addr: str
    ns_addr: str

    def exec(self) -> list[str]:
        """The command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 of POOL that no address of the host is in (another run's veth, say)."""
    used: list[ipaddress.IPv4Network] = []
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        used.append(ipaddress.IPv4Interface(line.split()[3]).network)
    subnets = list(POOL.subnets(new_prefix=30))
    random.shuffle(subnets)
    for net in subnets:
        if not any(net.overlaps(u) for u in used):
            return net
    raise AssertionError(f"no free /30 left in {POOL}")


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    """The namespace, its veth pair and addresses; everything in it killed and it all removed
    afterwards, whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace and a veth pair (CI runs as root)")
    if shutil.which("ip") is None:
        pytest.fail("`ip` (iproute2) is missing: .ci/run installs it")
    tag = uuid.uuid4().hex[:8]
    net = _free_subnet()
    host_addr, ns_addr = (str(a) for a in list(net.hosts())[:2])
    ns = Netns(f"appyard-t-{tag}", f"ayh{tag}", host_addr, ns_addr)
    ns_if = f"ayn{tag}"
    try:
        _ip("netns", "add", ns.name)
        _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns.name)
        _ip("addr", "add", f"{host_addr}/30", "dev", ns.host_if)
        _ip("link", "set", ns.host_if, "up")
        _ip("-n", ns.name, "addr", "add", f"{ns_addr}/30", "dev", ns_if)
        _ip("-n", ns.name, "link", "set", "lo", "up")
        _ip("-n", ns.name, "link", "set", ns_if, "up")
        # its only way out is the veth pair, to the /30: no default route
        routes = _ip("-n", ns.name, "-4", "route", "show").splitlines()
        assert [r.split()[0] for r in routes] == [str(net)], routes
        assert not _ip("-n", ns.name, "-6", "route", "show", "default").strip()
        yield ns
    finally:
        _remove(ns)


def _remove(ns: Netns) -> None:
    """Kill what still runs in the namespace (supervisors outlive their agent by design), then
    remove the veth pair and the namespace."""
    listed = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True, text=True)
    pids = [int(p) for p in listed.stdout.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(p) for p in pids), 30, f"the processes in {ns.name} to end")
    subprocess.run(["ip", "link", "del", ns.host_if], capture_output=True)
    subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)


@pytest.fixture(scope="module")
def server(netns: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """A server listening on the host's end of the veth pair: the one address the namespace
    can reach. (It replaces conftest's per-database server: this is about the network.)"""
    proc = ServerProc(tmp_path_factory.mktemp("server-netns"), host=netns.host_addr).start()
    yield proc
    proc.stop()


def _tcp_table(pid: int) -> list[tuple[Endpoint, Endpoint, str]]:
    """The TCP sockets of ``pid``'s network namespace: (local, remote, state)."""
    rows = []
    for name in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        for line in lines:
            local, remote, state = line.split()[1:4]
            rows.append((_endpoint(local), _endpoint(remote), state))
    return rows


def _endpoint(text: str) -> Endpoint:
    addr, port = text.split(":")
    # the kernel prints each 32-bit word of the address in host (little-endian) order
    raw = b"".join(bytes.fromhex(addr[i : i + 8])[::-1] for i in range(0, len(addr), 8))
    return ipaddress.ip_address(raw), int(port, 16)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _dial(addr: str, port: int) -> OSError | None:
    """Connect from the host's namespace: the error, or None when something accepted."""
    try:
        with socket.create_connection((addr, port), timeout=10):
            return None
    except OSError as exc:
        return exc


@pytest.fixture
def api(world: World) -> Iterator[ay.Api]:
    with ay.Api(world.server.url, world.admin.http.headers["Authorization"].split()[1]) as api:
        yield api


def test_requests_and_the_page_reach_an_app_the_server_cannot_route_to(
    world: World, netns: Netns, api: ay.Api
) -> None:
    """An agent in its own network namespace serves the echo model: ``send_request`` and the
    app's page work through the server, while the app's port cannot be reached from the
    server's side at all (refused on 127.0.0.1 and on the namespace's address), though it is
    open inside; and every connection between the two networks was opened from inside, to
    the server's port, with nothing in the namespace listening beyond its loopback."""
    agent_id, token = world.new_agent_token("netns")
    agent = world.start_agent(token, name="netns", wrapper=netns.exec())
    assert agent.proc is not None and world.server.proc is not None

    def listed() -> AgentInfo | None:
        return next(
            (
                a
                for a in api.agent.get_list(world.team_id)
                if a.id == agent_id and a.status == "online"
            ),
            None,
        )

    info = wait_for(listed, 60, f"the agent in {netns.name} to come online:\n{agent.log_text}")
    # bubblewrap's sandbox works unchanged in the namespace (it shares the agent's network)
    assert info is not None and info.isolation == "sandboxed", agent.log_text

    module_id = world.admin.publish(ECHO_MODEL)["module_id"]
    session = api.app.start(
        agent_id=agent_id,
        module_id=module_id,
        workspace_id=world.workspace_id,
        params={"label": "netns"},
    )
    tid = session.task_id
    assert api.app.wait_until_ready_for_api_calls(tid, 60, 1), agent.log_text
    # the app runs in the namespace, in bubblewrap's sandbox
    pids = processes_of(tid, world.server.url)
    assert pids and any("bwrap" in _cmdline(p) for p in pids), pids
    agent_net = os.readlink(f"/proc/{agent.proc.pid}/ns/net")
    assert agent_net != os.readlink("/proc/self/ns/net")
    assert all(os.readlink(f"/proc/{p}/ns/net") == agent_net for p in pids)

    answer = api.task.send_request(tid, "predict", {"inputs": ["ab", "a1"]}, raise_error=True)
    assert answer == {
        "model": "echo-model",
        "predictions": [
            {"input": "ab", "label": "netns", "score": 1.0},
            {"input": "a1", "label": "netns", "score": 0.5},
        ],
    }

    # the app's page rides the same tunnel (the echo model's GET /: its commands)
    auth = {"Authorization": f"Bearer {api._core.token}"}
    with httpx.Client(base_url=world.server.url, headers=auth, timeout=60) as http:
        page = http.get(f"/apps/{tid}/")
    assert page.status_code == 200, page.text
    assert page.json() == {"status": "ok", "commands": ["echo", "info", "predict"]}

    state = json.loads((agent.work_dir / "tasks" / str(tid) / "state.json").read_text())
    port = int(state["app_port"])
    # open inside the namespace, where the agent is
    inside = subprocess.run(
        [
            *netns.exec(),
            sys.executable,
            "-c",
            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=10).close()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert inside.returncode == 0, inside.stderr
    # and not from the server's side: the namespace's address refuses it (the app listens
    # on the namespace's loopback only), and the host's own loopback is another one
    assert isinstance(_dial(netns.ns_addr, port), ConnectionRefusedError)
    host_listeners = {
        local[1] for local, _, state in _tcp_table(world.server.proc.pid) if state == LISTEN
    }
    if port not in host_listeners:  # else another process of the host has that number too
        assert isinstance(_dial("127.0.0.1", port), ConnectionRefusedError)

    # the namespace's side of the story, from the kernel's table of its sockets
    host_addr, ns_addr = (ipaddress.ip_address(a) for a in (netns.host_addr, netns.ns_addr))
    table = _tcp_table(agent.proc.pid)
    for local, _, state in table:
        if state == LISTEN:
            assert local[0].is_loopback or local[0] == ipaddress.ip_address("::ffff:127.0.0.1"), (
                f"something in the namespace listens on {local}: {table}"
            )
    crossing = [(lo, re) for lo, re, st in table if st == ESTABLISHED and lo[0] == ns_addr]
    assert crossing, table
    for local, remote in crossing:
        # opened from inside: to the server's port, from a port of the namespace's own
        assert remote == (host_addr, world.server.port), (local, remote)

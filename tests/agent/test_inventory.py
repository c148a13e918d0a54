"""An agent's machine and labels: reported by real agents, stored by a real server (SQLite and
PostgreSQL), shown by the SDK and the CLI; junk from a hand-made agent refused with a 422.

This machine has no GPU: agents declare theirs through the test-only inventory file
(``APPYARD_AGENT_INVENTORY_FILE``), the seam the placement tests build on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import appyard as ay
from appyard.agent.exit_codes import RET_CONFIG
from appyard.agent.inventory import INVENTORY_FILE_ENV, differs
from appyard.cli.agent_cmd import agent_argv
from appyard.schemas.agents import MAX_GPUS, AgentInventory
from tests.conftest import _db_params, live_server
from tests.support import CLIENT_VARS, Client, ServerProc, World, wait_for

A100 = "NVIDIA A100-SXM4-80GB"
GPUS = [
    {
        "index": 0,
        "uuid": "GPU-11111111-2222-3333-4444-555555555555",
        "name": A100,
        "memory_mb": 81920,
    },
    {
        "index": 1,
        "uuid": "GPU-66666666-7777-8888-9999-000000000000",
        "name": A100,
        "memory_mb": 81920,
    },
]


@pytest.fixture(scope="module", params=_db_params())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProc]:
    """As conftest's, but agents poll every 2 s, so that a change is reported within seconds."""
    home = tmp_path_factory.mktemp(f"server-{request.param}")
    with live_server(request.param, home, {"APPYARD_POLL_TIMEOUT_S": "2"}) as proc:
        yield proc


def _agent(world: World, name: str, *args: str) -> tuple[int, str]:
    agent_id, token = world.new_agent_token(name)
    proc = world.start_agent(token, name=name, extra_args=list(args))

    def reported() -> bool:
        info = world.admin.ok("GET", f"/agents/{agent_id}")
        return info["status"] == "online" and info["inventory_at"] is not None

    wait_for(reported, 30, f"agent {name} online with its machine:\n{proc.log_text}")
    return agent_id, token


def test_gpus_and_labels_reach_the_sdk_and_the_cli(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "inventory.json"
    spec.write_text(json.dumps({"gpus": GPUS}))
    monkeypatch.setenv(INVENTORY_FILE_ENV, str(spec))
    agent_id, _ = _agent(world, "gpu-box-1", "--label", "gpu=a100", "--label", "zone=eu-1")

    with ay.Api(world.server.url, world.server.admin_token) as api:
        info = api.agent.get_info_by_id(agent_id)
        # each free: no session holds one
        assert [g.model_dump() for g in info.gpus] == [{**g, "task_id": None} for g in GPUS]
        assert info.labels == {"gpu": "a100", "zone": "eu-1"}
        assert info.cpus is not None and info.cpus >= 1
        assert info.memory_mb is not None and info.memory_mb > 0
        assert info.disk_free_mb is not None and info.disk_total_mb is not None
        assert 0 < info.disk_free_mb <= info.disk_total_mb
        listed = next(a for a in api.agent.get_list(world.team_id) if a.id == agent_id)
        assert listed.gpus == info.gpus and listed.labels == info.labels

        out = world.cli("agent", "list")
        assert out.returncode == 0, out.stderr
        row = next(line for line in out.stdout.splitlines() if "gpu-box-1" in line)
        assert f"2 x {A100} (80 GB)" in row
        assert "gpu=a100 zone=eu-1" in row
        assert f" {info.cpus} " in row

        # the machine changed (a GPU is gone): its next poll says so, no restart needed
        spec.write_text(json.dumps({"gpus": GPUS[1:], "memory_mb": 4096}))

        def one_gpu() -> Any:
            now = api.agent.get_info_by_id(agent_id)
            return now if len(now.gpus) == 1 else None

        now = wait_for(one_gpu, 20, "the agent to report one GPU")
        assert now.gpus[0].uuid == GPUS[1]["uuid"] and now.gpus[0].index == 1
        assert now.memory_mb == 4096
        assert now.memory_available_mb is not None and now.memory_available_mb <= 4096


def _meminfo_mb(name: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key == name:
            return int(rest.split()[0]) // 1024
    raise AssertionError(f"{name} not in /proc/meminfo")


def test_an_agent_without_the_file_reports_its_own_machine(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(INVENTORY_FILE_ENV, raising=False)
    agent_id, token = _agent(world, "plain")
    info = world.admin.ok("GET", f"/agents/{agent_id}")
    assert info["gpus"] == []
    assert info["labels"] == {}
    cpus = os.cpu_count()
    assert info["cpus"] == len(os.sched_getaffinity(0)) and cpus is not None
    assert info["cpus"] <= cpus
    assert info["memory_mb"] == _meminfo_mb("MemTotal")
    assert 0 < info["memory_available_mb"] <= info["memory_mb"]
    st = os.statvfs(world.tmp)
    total = st.f_blocks * st.f_frsize // 2**20
    assert info["disk_total_mb"] == total
    assert abs(info["disk_free_mb"] - st.f_bavail * st.f_frsize // 2**20) <= total // 20 + 64
    log = next(a for a in world.agents if a.token == token).log_text
    assert "no GPUs reported:" in log, log  # one line saying why
    assert log.count("no GPUs reported:") == 1, log

    # the agent itself may read its own record; a user of no team of the agent may not
    assert Client(world.server.url, token).ok("GET", f"/agents/{agent_id}")["id"] == agent_id
    login = f"outsider-{agent_id}"
    world.admin.ok("POST", "/users", json={"login": login})
    uid = next(u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == login)
    raw = world.admin.ok("POST", "/tokens", json={"name": login, "user_id": uid})["token"]
    r = Client(world.server.url, raw).get(f"/agents/{agent_id}")
    assert r.status_code == 404 and r.json()["error"]["field"] == "agent_id", r.text


def _inventory(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cpus": 8,
        "memory_mb": 32768,
        "memory_available_mb": 30000,
        "disk_free_mb": 100000,
        "disk_total_mb": 500000,
        "gpus": [dict(g) for g in GPUS],
        "labels": {"gpu": "a100"},
    }
    base.update(changes)
    return base


JUNK: list[tuple[dict[str, Any], str]] = [
    (
        _inventory(gpus=[{**GPUS[0], "index": i, "uuid": f"GPU-{i}"} for i in range(MAX_GPUS + 1)]),
        "inventory.gpus",
    ),
    (_inventory(gpus=[{**GPUS[0], "uuid": "GPU-" + "x" * 200}]), "inventory.gpus[0].uuid"),
    (_inventory(gpus=[{**GPUS[0], "name": "A100\n\x1b[31m"}]), "inventory.gpus[0].name"),
    (_inventory(gpus=[{**GPUS[0], "memory_mb": -1}]), "inventory.gpus[0].memory_mb"),
    (_inventory(gpus=[{**GPUS[0], "extra": 1}]), "inventory.gpus[0].extra"),
    (_inventory(gpus=[GPUS[0], GPUS[0]]), "inventory"),
    (_inventory(cpus=0), "inventory.cpus"),
    (_inventory(memory_mb=2**70), "inventory.memory_mb"),
    (_inventory(memory_available_mb=40000), "inventory"),
    (_inventory(labels={"bad key": "x"}), "inventory.labels"),
    (_inventory(labels={"k": "v" * 1000}), "inventory.labels"),
    (_inventory(labels={f"k{i}": "v" for i in range(200)}), "inventory.labels"),
    (_inventory(labels=["gpu=a100"]), "inventory.labels"),
]


def test_junk_from_a_hand_made_agent_is_refused_naming_the_field(world: World) -> None:
    agent_id, token = world.new_agent_token("hand-made")
    agent = Client(world.server.url, token)
    good = _inventory()
    agent.ok("POST", "/agents/hello", json={"slots": 1, "inventory": good})
    before = world.admin.ok("GET", f"/agents/{agent_id}")
    assert [g["uuid"] for g in before["gpus"]] == [g["uuid"] for g in GPUS]
    assert before["labels"] == {"gpu": "a100"} and before["cpus"] == 8

    for junk, field in JUNK:
        for path, body in (
            ("/agents/hello", {"slots": 1, "inventory": junk}),
            (f"/agents/{agent_id}/poll", {"free_slots": 1, "timeout_s": 0, "inventory": junk}),
        ):
            r = agent.post(path, json=body)
            assert r.status_code == 422, (path, field, r.text)
            error = r.json()["error"]
            assert error["field"] == field, (path, error)
            assert error["message"].startswith(f"{field}:"), error
    # nothing of it was written
    after = world.admin.ok("GET", f"/agents/{agent_id}")
    assert {k: after[k] for k in ("gpus", "labels", "cpus", "memory_mb")} == {
        k: before[k] for k in ("gpus", "labels", "cpus", "memory_mb")
    }

    # a poll carrying a change stores it; a GPU kept keeps its place, a new one is added
    changed = _inventory(
        gpus=[{**GPUS[1], "index": 0}, {**GPUS[0], "uuid": "GPU-new", "index": 1}],
        labels={"zone": "eu"},
    )
    agent.ok(
        "POST",
        f"/agents/{agent_id}/poll",
        json={"free_slots": 1, "timeout_s": 0, "inventory": changed},
    )
    now = world.admin.ok("GET", f"/agents/{agent_id}")
    assert [(g["index"], g["uuid"]) for g in now["gpus"]] == [(0, GPUS[1]["uuid"]), (1, "GPU-new")]
    assert now["labels"] == {"zone": "eu"}
    # a poll without one leaves it as it is; a hello without one (an older agent) too
    agent.ok("POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "timeout_s": 0})
    agent.ok("POST", "/agents/hello", json={"slots": 1})
    assert world.admin.ok("GET", f"/agents/{agent_id}")["gpus"] == now["gpus"]


def test_bad_labels_and_a_broken_inventory_file_are_clear_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
    env.update(COLUMNS="200", NO_COLOR="1")

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    server = ("--server", "http://127.0.0.1:9", "--token", "t", "--work-dir", str(tmp_path / "w"))
    out = run("appyard.cli", "agent", "run", *server, "--label", "bad key=1")
    assert out.returncode == 2 and "Invalid value for '--label'" in out.stderr, out.stderr
    assert "label key 'bad key'" in out.stderr
    out = run("appyard.agent", *server, "--label", "gpu")
    assert out.returncode == RET_CONFIG and "is not KEY=VALUE" in out.stderr, out.stderr
    out = run("appyard.agent", *server, "--label", "a=1", "--label", "a=2")
    assert out.returncode == RET_CONFIG and "label 'a' is given twice" in out.stderr, out.stderr

    home = {"APPYARD_HOME": str(tmp_path / "home"), "APPYARD_ENV_FILE": str(tmp_path / "a.env")}
    out = run("appyard.cli", "up", "--port", "0", "--label", "zone=eu west", **home)
    assert out.returncode == 2 and "Invalid value for '--label'" in out.stderr, out.stderr
    # what ``appyard up`` gives its agent
    argv = agent_argv("http://s", 2, None, True, labels=["gpu=a100", "zone=eu"])
    assert argv[-4:] == ["--label", "gpu=a100", "--label", "zone=eu"]

    missing = tmp_path / "missing.json"
    no_sandbox = {"APPYARD_AGENT_SANDBOX": "0", INVENTORY_FILE_ENV: str(missing)}
    out = run("appyard.agent", *server, **no_sandbox)
    assert out.returncode == RET_CONFIG, out.stderr
    assert f"{INVENTORY_FILE_ENV}={missing}: cannot read it" in out.stderr, out.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"gpus": [{"index": 0, "uuid": "GPU-1", "name": "x"}]}))
    out = run("appyard.agent", *server, **{**no_sandbox, INVENTORY_FILE_ENV: str(broken)})
    assert out.returncode == RET_CONFIG, out.stderr
    assert "gpus.0.memory_mb: Field required" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_what_is_worth_sending_again() -> None:
    old = AgentInventory.model_validate(_inventory())
    same_but_a_little = AgentInventory.model_validate(
        _inventory(memory_available_mb=29000, disk_free_mb=99000)
    )
    assert not differs(same_but_a_little, old)
    assert differs(AgentInventory.model_validate(_inventory(memory_available_mb=20000)), old)
    assert differs(AgentInventory.model_validate(_inventory(labels={})), old)
    assert differs(AgentInventory.model_validate(_inventory(gpus=GPUS[:1])), old)
    assert differs(old, None)


def test_the_nvml_reader_without_a_driver_says_why_once() -> None:
    """On a machine without an NVIDIA driver (as this project's CI machines are; NVML with a
    driver is not tested here): no GPUs and one reason, however often it is read."""
    code = (
        "import logging, sys; logging.basicConfig(stream=sys.stderr, level='INFO')\n"
        "from appyard.agent.inventory import read_gpus\n"
        "print(len(read_gpus()), len(read_gpus()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != INVENTORY_FILE_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0"]
    assert out.stderr.count("no GPUs reported:") == 1, out.stderr

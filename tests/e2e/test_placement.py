"""Placement by what is free: real server, real agents that declare GPUs through the test-only
inventory file (``APPYARD_AGENT_INVENTORY_FILE``; this machine has none), real app processes.

Racing starts never share a GPU; a session that cannot run now waits and says why; one that
can never run is refused; the session sees exactly its GPUs; an agent's end of a session, its
loss, or its return frees what it held."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import appyard as ay
from appyard.agent.inventory import INVENTORY_FILE_ENV
from appyard.errors import ApiError
from tests.support import AgentProc, World, wait_for

S = ay.Status
GPU_APP = Path(__file__).parent / "apps" / "gpu"


def _gpus(n: int, memory_mb: int = 16000) -> list[dict[str, Any]]:
    return [
        {"index": i, "uuid": f"GPU-test-{i}", "name": "Test GPU", "memory_mb": memory_mb}
        for i in range(n)
    ]


def _agent(
    world: World,
    tmp_path: Path,
    name: str,
    gpus: int,
    slots: int = 4,
    labels: tuple[str, ...] = (),
    **figures: int,
) -> tuple[int, str, AgentProc]:
    """An agent online whose machine has ``gpus`` GPUs (its ``labels``, and ``figures`` such
    as ``memory_mb`` instead of the machine's)."""
    spec = tmp_path / f"{name}-inventory.json"
    spec.write_text(json.dumps({"gpus": _gpus(gpus), **figures}))
    agent_id, token = world.new_agent_token(name)
    extra = [arg for label in labels for arg in ("--label", label)]
    proc = world.start_agent(
        token, name=name, slots=slots, extra_env={INVENTORY_FILE_ENV: str(spec)}, extra_args=extra
    )
    api = _api(world)
    wait_for(
        lambda: any(
            a.id == agent_id and a.status == "online" for a in api.agent.get_list(world.team_id)
        ),
        30,
        f"agent {name} online:\n{proc.log_text}",
    )
    return agent_id, token, proc


def _api(world: World) -> ay.Api:
    return ay.Api(world.server.url, world.admin.http.headers["Authorization"].split()[1])


def _start(api: ay.Api, world: World, module_id: int, **kw: Any) -> int:
    return api.app.start(workspace_id=world.workspace_id, module_id=module_id, **kw).task_id


def _info(api: ay.Api, tid: int) -> dict[str, Any]:
    info: dict[str, Any] = api.task.get_info_by_id(tid)
    return info


def _devices(api: ay.Api, tid: int) -> str:
    """What the app printed of CUDA_VISIBLE_DEVICES."""

    def said() -> list[str]:
        lines = [line.text for line in api.task.logs(tid)]
        return [t.split("=", 1)[1] for t in lines if t.startswith("CUDA_VISIBLE_DEVICES=")]

    return wait_for(said, 30, f"task {tid} to print its devices")[0]


def _refused(call: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        call()
    return info.value


def test_racing_starts_never_share_a_gpu_and_the_loser_waits_saying_why(
    world: World, tmp_path: Path
) -> None:
    api = _api(world)
    one, _, _ = _agent(world, tmp_path, "gpu-one", gpus=1)
    none, _, _ = _agent(world, tmp_path, "cpu-box", gpus=0)
    module_id = world.admin.publish(GPU_APP)["module_id"]
    with ThreadPoolExecutor(2) as pool:
        tids = list(pool.map(lambda _: _start(api, world, module_id), range(2)))
    placed = wait_for(
        lambda: [t for t in tids if _info(api, t)["status"] == "started"] or None,
        60,
        "one of the two to start",
    )
    assert len(placed) == 1
    winner = placed[0]
    loser = next(t for t in tids if t != winner)
    info = _info(api, winner)
    assert info["agent_id"] == one
    assert info["gpus"] == [{"index": 0, "uuid": "GPU-test-0"}]
    assert _devices(api, winner) == "0"
    # the agent shows which session holds its GPU
    assert [(g.index, g.task_id) for g in api.agent.get_info_by_id(one).gpus] == [(0, winner)]
    waiting = _info(api, loser)
    assert waiting["status"] == "queued"
    assert waiting["wait_reason"] == (
        f"no online agent has 1 GPU free (agent {one} (gpu-one): 0 of 1 GPU free; "
        f"agent {none} (cpu-box) has 0 GPUs, not 1)"
    )
    # the CLI: a start that has to wait says why; the sessions list shows the GPUs held
    third = world.cli("app", "start", "tests/gpu", "--gpus", "1")
    assert third.returncode == 0, third.stderr
    assert f"It waits: no online agent has 1 GPU free (agent {one} (gpu-one): 0 of 1" in (
        " ".join(third.stdout.split())
    )
    third_id = int(third.stdout.split("task ", 1)[1].split()[0])
    listed = world.cli("app", "sessions", "--status", "started")
    assert listed.returncode == 0, listed.stderr
    assert "GPUS" in listed.stdout and f"{winner} " in listed.stdout
    api.app.stop(third_id)
    # the GPU freed by a stop goes to the one that waited
    api.app.stop(winner)
    assert api.app.wait(loser, target_status=S.STARTED) is S.STARTED
    info = _info(api, loser)
    assert info["agent_id"] == one and info["gpus"] == [{"index": 0, "uuid": "GPU-test-0"}]
    assert info["wait_reason"] is None
    api.app.stop(loser)
    api.close()


def test_more_gpus_labels_and_what_can_never_run(world: World, tmp_path: Path) -> None:
    api = _api(world)
    big, _, _ = _agent(
        world,
        tmp_path,
        "gpu-four",
        gpus=4,
        labels=("zone=b",),
        memory_mb=512,
        memory_available_mb=512,
    )
    module_id = world.admin.publish(GPU_APP)["module_id"]

    tid = _start(api, world, module_id, resources={"gpus": 3})
    assert api.app.wait(tid, target_status=S.STARTED) is S.STARTED
    assert _devices(api, tid) == "0,1,2"
    assert _info(api, tid)["resources"] == {"gpus": 3}

    # a session asking for no GPU on a GPU machine sees none
    no_gpu = _start(api, world, module_id, resources={"gpus": 0})
    assert api.app.wait(no_gpu, target_status=S.STARTED) is S.STARTED
    assert _devices(api, no_gpu) == ""
    assert _info(api, no_gpu)["gpus"] == []

    # labels: its agent must carry them
    labelled = _start(api, world, module_id, resources={"agent_labels": {"zone": "b"}})
    assert api.app.wait(labelled, target_status=S.STARTED) is S.STARTED
    assert _devices(api, labelled) == "3"

    # never: more than the manifest allows, more GPUs than any agent has, a label none has
    over = _refused(lambda: _start(api, world, module_id, resources={"gpus": 5}))
    assert over.status_code == 422 and over.field == "resources.gpus"
    assert "at most 4" in over.message
    never = _refused(lambda: _start(api, world, module_id, resources={"memory_mb": 1024}))
    assert never.status_code == 422 and never.field == "resources", never.message
    assert f"agent {big} (gpu-four) has 512 MB of memory, not 1024" in never.message
    unasked = _refused(lambda: _start(api, world, module_id, resources={"gpu_memory_mb": 8}))
    assert unasked.status_code == 422 and unasked.field == "resources.gpu_memory_mb"
    bad = _refused(lambda: _start(api, world, module_id, resources={"gpus": "two"}))
    assert bad.status_code == 422 and bad.field == "resources.gpus"
    elsewhere = _refused(
        lambda: _start(api, world, module_id, resources={"agent_labels": {"zone": "c"}})
    )
    assert elsewhere.status_code == 422 and "zone=c" in elsewhere.message
    # unless the caller queues it anyway: then it waits, saying why
    queued = _start(
        api, world, module_id, resources={"agent_labels": {"zone": "c"}}, queue_anyway=True
    )
    reason = _info(api, queued)["wait_reason"]
    assert reason == (
        f"no online agent has 1 GPU free (agent {big} (gpu-four) has zone=b, not zone=c)"
    )
    for t in (tid, no_gpu, labelled, queued):
        api.app.stop(t)
    api.close()


def test_a_named_agent_that_cannot_fit_now_is_waited_for(world: World, tmp_path: Path) -> None:
    api = _api(world)
    one, token, proc = _agent(world, tmp_path, "gpu-one", gpus=1)
    module_id = world.admin.publish(GPU_APP)["module_id"]
    first = _start(api, world, module_id, agent_id=one)
    assert api.app.wait(first, target_status=S.STARTED) is S.STARTED
    second = _start(api, world, module_id, agent_id=one)
    reason = wait_for(lambda: _info(api, second)["wait_reason"], 30, "a reason to wait")
    assert reason == f"agent {one} (gpu-one): 0 of 1 GPU free"

    # its agent lost while holding the GPU: that session fails ("agent lost"), the GPU is
    # free again when the agent is back, and the waiting session gets it
    proc.kill9()
    wait_for(lambda: _info(api, first)["status"] == "error", 30, "the first to be lost")
    assert "agent lost" in (_info(api, first)["error"] or "")
    assert _info(api, second)["wait_reason"] == f"agent {one} (gpu-one) is offline"
    spec = tmp_path / "gpu-one-inventory.json"
    world.start_agent(
        token, name="gpu-one-again", slots=4, extra_env={INVENTORY_FILE_ENV: str(spec)}
    )
    assert api.app.wait(second, target_status=S.STARTED) is S.STARTED
    assert _info(api, second)["gpus"] == [{"index": 0, "uuid": "GPU-test-0"}]
    api.app.stop(second)
    api.close()

"""The whole HTTP API under schemathesis: every operation of ``/openapi.json``, valid and
invalid input (``--mode=all``), in all of its phases, on SQLite and on PostgreSQL; no request
may end in a server error.

The run is ``st run`` in a subprocess against the module's live server (the same process a user
runs), signed in as a member (team admin) of a fresh team that holds one of each thing the API
knows: a workspace, a project, a dataset, an image, a team file, a published module, an agent
(registered; its process never runs) and tasks. Path, query and body ids (and a release's
sha256) draw from those real ids half of the time, so that cases get past the lookups into the
routes' own logic, and are any value the rest of the time.

Pinned, so that one case cannot hold the run for up to 600 s: the ``timeout`` of a task's wait
and the ``timeout_s`` of an agent's poll (0.2 s); a server-sent-events stream is read for 1 s.

Runs, in this order:

1. with the member's token, all phases, every operation but ``DELETE`` ones;
2. with no token (coverage) and with a token that does not exist (coverage and fuzzing): each
   must be a 4xx, never a 5xx;
3. with the agent's token, all phases, on what an agent calls (hello, poll, its tasks' events,
   logs, progress, outputs, readiness, release downloads); one task is queued for it;
4. with the member's token, the ``DELETE`` operations alone, last: they throw away what the
   other cases reach (the seeded project, image, files), revoke tokens (the one in use
   included: a revoked token turns every later case into the same 401) and take members out
   of the team (the member itself included). Run before the others they would make the others
   meaningless; run last they are still fuzzed.

Checks: ``not_a_server_error`` and ``response_schema_conformance`` (a documented answer has the
documented shape). The server's log must hold no traceback afterwards either, and the server
must still answer.

The seed is fixed (``SEED``, printed; ``APPYARD_FUZZ_SEED`` overrides it) and the number of
cases per operation is bounded (``APPYARD_FUZZ_MAX_EXAMPLES``), so a run is reproducible and
its time bounded. Reproduce by hand against any server::

    st run http://127.0.0.1:8000/openapi.json --mode=all --seed 20240611 \\
        --phases=examples,coverage,fuzzing,stateful -H 'Authorization: Bearer TOKEN' \\
        --checks not_a_server_error,response_schema_conformance
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from PIL import Image

from tests.support import APPS, Client, World

SEED = int(os.environ.get("APPYARD_FUZZ_SEED", "20240611"))
MAX_EXAMPLES = int(os.environ.get("APPYARD_FUZZ_MAX_EXAMPLES", "10"))
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
ALL_PHASES = "examples,coverage,fuzzing,stateful"
#: what an agent's token is for: its own protocol, the reports on its tasks, release downloads
AGENT_PATHS = (
    r"^/api/v1/(agents/|tasks/\{task_id\}/(events|logs|progress|outputs|ready)$|releases/)"
)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _seed(world: World) -> tuple[str, str, dict[str, list[int | str]]]:
    """A team admin's token, an agent's token, and the ids of one of each thing in the team."""
    admin = world.admin
    login = f"fuzzer-{world.team_id}"
    user = admin.ok("POST", "/users", json={"login": login})
    admin.ok("POST", f"/teams/{world.team_id}/members", json={"login": login, "role": "admin"})
    token = admin.ok("POST", "/tokens", json={"name": "fuzz", "user_id": user["id"]})["token"]
    me = Client(world.server.url, token)

    module = me.publish(APPS / "worker")
    agent_id, agent_token = world.new_agent_token("fuzz-agent")  # its process never runs
    project = me.ok("POST", "/projects", json={"workspace_id": world.workspace_id, "name": "fz"})
    dataset = me.ok("POST", "/datasets", json={"project_id": project["id"], "name": "ds"})
    image = me.http.post(
        "/images",
        data={"dataset_id": str(dataset["id"]), "name": "a.png"},
        files={"file": ("a.png", _png())},
    )
    assert image.status_code == 201, image.text
    me.ok("PUT", f"/teams/{world.team_id}/files/content", params={"path": "/a.txt"}, content=b"a")
    start = {
        "workspace_id": world.workspace_id,
        "module_id": module["module_id"],
        "agent_id": agent_id,
    }
    task = me.ok("POST", "/tasks", json=start)
    # stopped while queued: a finished task, so that waits and streams on it answer at once
    # instead of holding each case for its whole timeout
    me.ok("POST", f"/tasks/{task['task_id']}/stop")
    # and one left queued for the agent: its token's cases claim it, report on it, end it
    queued = me.ok("POST", "/tasks", json=start)
    ids: dict[str, list[int | str]] = {
        "team_id": [world.team_id],
        "workspace_id": [world.workspace_id],
        "user_id": [int(user["id"])],
        "module_id": [int(module["module_id"])],
        "agent_id": [agent_id],
        "project_id": [int(project["id"])],
        "dataset_id": [int(dataset["id"])],
        "image_id": [int(image.json()["id"])],
        "task_id": [int(task["task_id"]), int(queued["task_id"])],
        "sha256": [str(module["release"]["sha256"])],
    }
    return token, agent_token, ids


def _config(path: Path, ids: dict[str, list[int | str]]) -> Path:
    """A schemathesis.toml that binds each id parameter, wherever it is, to the real ids half
    of the time."""
    lines = [f"seed = {SEED}", "", "[parameters]"]
    for name in ids:
        for where in ("path", "query", "body"):
            lines.append(f'"{where}.{name}" = {{ dictionary = "{name}", probability = 0.5 }}')
    for name, values in ids.items():
        lines += ["", f"[dictionaries.{name}]", f"values = {json.dumps(values)}"]
    lines += [
        # Server-sent events: a stream on a live task or team stays open; read each one for
        # a second (a stream cut short is no failure), not for the whole request timeout.
        "",
        "[[operations]]",
        'include-path-regex = "/(stream|watch)$"',
        "request-timeout = 1",
        # A wait answers when its task changes or its timeout passes, and the fuzz run starts
        # tasks that no agent runs: any other timeout lets one case hold the run up to 600 s.
        # Pinned, so that `timeout` itself is not fuzzed on this operation.
        "",
        "[[operations]]",
        'include-path = "/api/v1/tasks/{task_id}/wait"',
        'parameters = { "query.timeout" = 0.2 }',
        # The same for an agent's long-poll (up to 60 s when no task is queued for it).
        "",
        "[[operations]]",
        'include-path = "/api/v1/agents/{agent_id}/poll"',
        'parameters = { "body.timeout_s" = 0.2 }',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _st(config: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    cmd = [
        st,
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--mode=all",
        f"--seed={SEED}",
        f"--max-examples={MAX_EXAMPLES}",
        f"--checks={CHECKS}",
        # one worker: schemathesis's data generation parses source with `ast` (hypothesis'
        # lambda descriptions), and the CPython 3.11 used here now and then fails that with
        # "AST constructor recursion depth mismatch" when two threads parse at once
        "--workers=1",
        "--request-timeout=30",
        "--generation-database=none",
        "--suppress-health-check=all",
        *args,
    ]
    print("$", " ".join(c if "Bearer" not in c else "'Authorization: Bearer ...'" for c in cmd))
    # in the test's folder: st keeps a cache folder in its working directory
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=config.parent)
    # all of it when st failed (its report names each case and how to replay it)
    print(done.stdout if done.returncode else done.stdout[-3000:], done.stderr)
    return done


def test_no_request_is_a_server_error(world: World, tmp_path: Path) -> None:
    print(f"schemathesis seed: {SEED}")
    token, agent_token, ids = _seed(world)
    config = _config(tmp_path / "schemathesis.toml", ids)
    url = world.server.url
    bearer = f"Authorization: Bearer {token}"
    runs = [
        ("member", [f"--phases={ALL_PHASES}", "-H", bearer, "--exclude-method=DELETE"]),
        ("no token", ["--phases=coverage"]),  # refused before anything else is looked at
        ("unknown token", ["--phases=coverage,fuzzing", "-H", "Authorization: Bearer nope"]),
        (
            "agent",
            [
                f"--phases={ALL_PHASES}",
                "-H",
                f"Authorization: Bearer {agent_token}",
                f"--include-path-regex={AGENT_PATHS}",
            ],
        ),
        ("member, DELETE", [f"--phases={ALL_PHASES}", "-H", bearer, "--include-method=DELETE"]),
    ]
    failed = []
    for name, args in runs:
        done = _st(config, url, *args)
        if done.returncode != 0:
            failed.append(f"{name}: st exited with {done.returncode}")
    assert not failed, failed
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    log = (world.server.home / "server.log").read_text()
    assert "Traceback" not in log, log[-10000:]

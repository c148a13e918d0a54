"""Publishing cannot stop the instance (issue 10, point 3): a gzip bomb (17 MB, 17 GiB
unpacked) is refused with a 4xx after a few MB of work, outside any transaction, and other
clients' writes (a start, a sign-in) go on meanwhile."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from tests import bombs
from tests.support import APPS, World, pack


def _post_archive(world: World, data: bytes) -> tuple[int, dict[str, Any], float]:
    began = time.monotonic()
    r = world.admin.http.post("/modules", files={"archive": ("app.tar.gz", data)}, timeout=120)
    return r.status_code, r.json(), time.monotonic() - began


def test_a_gzip_bomb_is_refused_while_another_clients_start_succeeds(world: World) -> None:
    world.admin.publish(APPS / "worker")
    module_id = world.admin.ok("GET", "/modules/lookup", params={"slug": "tests/worker"})["id"]
    developer = world.member(f"bomb-dev-{world.team_id}", "developer")
    huge, many = bombs.one_huge_file(17), bombs.many_files(10)
    assert len(huge) < 20 * bombs.MiB and len(many) < 2 * bombs.MiB  # small on disk
    answers: list[tuple[int, dict[str, Any], float]] = []

    def publish(data: bytes) -> None:
        answers.append(_post_archive(world, data))

    publishers = [threading.Thread(target=publish, args=(d,)) for d in (huge, many, huge)]
    for t in publishers:
        t.start()
    # meanwhile another client starts a session and signs in: both are writes
    began = time.monotonic()
    started = developer.ok(
        "POST", "/tasks", json={"workspace_id": world.workspace_id, "module_id": module_id}
    )
    token = developer.ok("POST", "/tokens", json={"name": "during-the-bomb"})
    assert started["task_id"] and token["token"]
    assert time.monotonic() - began < 10
    for t in publishers:
        t.join(120)
    assert len(answers) == 3
    for status, body, took in answers:
        # refused (422), or told to come back (429: two publishes were being checked)
        assert status in (422, 429), body
        assert body["error"]["field"] == "archive", body
        assert took < 10, f"a bomb took {took:.1f} s to refuse"
    refusals = [b["error"]["message"] for s, b, _ in answers if s == 422]
    assert refusals and all("unpacks to more than" in m for m in refusals), refusals
    # nothing of a bomb is stored
    stored = os.listdir(world.server.home / "releases")
    assert all(os.path.getsize(world.server.home / "releases" / f) < bombs.MiB for f in stored)


def test_an_honest_large_app_is_published(world: World) -> None:
    """The caps leave room for real apps: 24 MiB of data that does not compress."""
    folder = world.tmp / "large-app"
    folder.mkdir()
    (folder / "config.json").write_text(
        '{"name": "Large", "slug": "tests/large", "main_script": "main.py"}'
    )
    (folder / "main.py").write_text("print('large')\n")
    (folder / "weights.bin").write_bytes(os.urandom(24 * bombs.MiB))
    status, body, _ = _post_archive(world, pack(folder))
    assert status == 201, body
    assert body["release"]["size"] > 24 * bombs.MiB

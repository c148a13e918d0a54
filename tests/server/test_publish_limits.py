"""Publishes under way at once are bounded (``APPYARD_MAX_CONCURRENT_PUBLISHES``), their upload
included: one more waits ``APPYARD_PUBLISH_WAIT_S`` for a place, then gets a 429 with
``Retry-After``, its archive unread; the SDK's publish (idempotent: the server dedupes by
content) waits as the server asks and tries again. The archive caps are settings too."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appyard.errors import BadRequestError, TooManyRequestsError
from appyard.sdk._sync import SyncCore
from appyard.sdk.module_api import ModuleApi
from tests.support import APPS, ServerProc, pack, wait_for

API = "/api/v1"
BOUNDARY = "appyard-test-boundary"


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """A server taking one publish at a time, with a short wait for a place and small archive
    caps. The places are counted in the server process: one database shows them."""
    env = {
        "APPYARD_MAX_CONCURRENT_PUBLISHES": "1",
        "APPYARD_PUBLISH_WAIT_S": "0.5",
        "APPYARD_RETRY_AFTER_S": "1",
        "APPYARD_MAX_RELEASE_MEMBERS": "3",
    }
    server = ServerProc(tmp_path_factory.mktemp("publishes"), extra_env=env).start()
    yield server
    server.stop()


class HeldPublish:
    """A publish whose multipart body is sent in two parts: the second only once ``release``
    is set, so the publish stays under way meanwhile."""

    def __init__(self, server: ServerProc, archive: bytes) -> None:
        self.release = threading.Event()
        self.sent_first_part = threading.Event()
        self.answer: list[httpx.Response] = []
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="archive"; '
            f'filename="app.tar.gz"\r\nContent-Type: application/gzip\r\n\r\n'
        ).encode()
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        half = len(archive) // 2
        self._parts = (head + archive[:half], archive[half:] + tail)
        self._server = server
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()
        assert self.sent_first_part.wait(10), "the held publish did not start"

    def _body(self) -> Iterator[bytes]:
        yield self._parts[0]
        self.sent_first_part.set()
        self.release.wait(120)
        yield self._parts[1]

    def _send(self) -> None:
        headers = {
            "Authorization": f"Bearer {self._server.admin_token}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        }
        with httpx.Client(base_url=self._server.url + API, timeout=120) as http:
            self.answer.append(http.post("/modules", content=self._body(), headers=headers))

    def finish(self) -> httpx.Response:
        self.release.set()
        self._thread.join(120)
        assert self.answer, "the held publish got no answer"
        return self.answer[0]


def _publish(server: ServerProc, archive: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}{API}/modules",
        files={"archive": ("app.tar.gz", archive)},
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=60,
    )


def _refused_while_held(server: ServerProc, slug: str) -> httpx.Response:
    """Publish until one is refused (429) because a held publish is under way, and return that
    answer. One may go through (201) first, in the moment before the held one takes its place
    (its head reached the server, but not yet the guard)."""
    archive = pack(APPS / "worker", {"slug": slug})
    answers: list[httpx.Response] = []

    def refused() -> bool:
        r = _publish(server, archive)
        assert r.status_code in (201, 429), r.text
        answers.append(r)
        return r.status_code == 429

    wait_for(refused, 30, "a publish refused while another one is under way")
    return answers[-1]


def test_a_publish_beyond_the_limit_is_a_429_with_retry_after(one_at_a_time: ServerProc) -> None:
    held = HeldPublish(one_at_a_time, pack(APPS / "worker", {"slug": "limits/held"}))
    r = _refused_while_held(one_at_a_time, "limits/second")
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == "too_many_requests" and error["field"] == "archive", error
    assert "1 publish(es) are under way" in error["message"], error
    assert "APPYARD_MAX_CONCURRENT_PUBLISHES" in error["message"], error
    assert r.headers["retry-after"] == "1"
    assert r.headers["connection"] == "close"  # its archive was not read

    # the held one ends well, and the place it gave back takes the second
    done = held.finish()
    assert done.status_code == 201, done.text
    r = _publish(one_at_a_time, pack(APPS / "worker", {"slug": "limits/second"}))
    assert r.status_code == 201, r.text


def test_the_sdk_publish_waits_as_a_429_asks_and_tries_again(one_at_a_time: ServerProc) -> None:
    held = HeldPublish(one_at_a_time, pack(APPS / "worker", {"slug": "limits/held-sdk"}))
    _refused_while_held(one_at_a_time, "limits/probe")  # the held one has its place
    waits: list[float] = []

    def pause(seconds: float) -> None:
        """The SDK's wait between two attempts: the held publish ends during the first."""
        waits.append(seconds)
        if len(waits) == 1:
            assert held.finish().status_code == 201
        threading.Event().wait(seconds)

    core = SyncCore(one_at_a_time.url, one_at_a_time.admin_token, pause=pause)
    try:
        result = ModuleApi(core).publish_archive(pack(APPS / "worker", {"slug": "limits/sdk"}))
    finally:
        core.close()
        held.finish()
    assert waits == [1.0], waits  # the Retry-After, not the backoff after a failure
    assert result.module_id


def test_the_sdk_gives_up_after_a_few_waits_and_says_when_to_retry(
    one_at_a_time: ServerProc,
) -> None:
    held = HeldPublish(one_at_a_time, pack(APPS / "worker", {"slug": "limits/held-long"}))
    _refused_while_held(one_at_a_time, "limits/probe")
    waits: list[float] = []

    def pause(seconds: float) -> None:
        waits.append(seconds)
        threading.Event().wait(seconds)

    core = SyncCore(one_at_a_time.url, one_at_a_time.admin_token, pause=pause)
    try:
        with pytest.raises(TooManyRequestsError) as caught:
            ModuleApi(core).publish_archive(pack(APPS / "worker", {"slug": "limits/never"}))
    finally:
        core.close()
        assert held.finish().status_code == 201
    assert waits == [1.0, 1.0, 1.0], waits  # a few tries, each after the wait asked for
    error = caught.value
    assert error.retry_after_s == 1.0 and error.field == "archive"
    assert "Still refused after 3 retries over 3 s" in str(error), error
    assert "Call again in 1 s" in str(error), error


def test_the_archive_caps_are_settings(one_at_a_time: ServerProc, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "config.json").write_text(
        '{"name": "Many", "slug": "limits/many", "main_script": "a.py"}'
    )
    for name in ("a.py", "b.py", "c.py"):
        (app / name).write_text("print('hi')\n")
    r = _publish(one_at_a_time, pack(app))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "archive" and "more than 3 entries" in error["message"], error
    with pytest.raises(BadRequestError):
        ModuleApi(SyncCore(one_at_a_time.url, one_at_a_time.admin_token)).publish_archive(pack(app))

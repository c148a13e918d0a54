"""Browser fixtures: a real server with a real agent, users with passwords, the bundled apps
published, and headless Chromium (Debian's, driven by Playwright; nothing downloads a browser).

- ``stand`` (one per test module): a server on SQLite, a team with a workspace, the users
  ``dev`` (developer) and ``viewer`` (viewer) with :data:`PASSWORD`, an online agent, and the
  apps ``hello``, ``project-viewer`` (with a project to view), the test worker and
  ``many-lines`` published.
- ``browser`` (one per test module): Chromium at ``$APPYARD_CHROMIUM`` or ``/usr/bin/chromium``.
  Without it the browser tests are skipped, except under ``CI=true``, where that is an error.
- ``page``: a fresh browser context (its own storage: nobody signed in) at 1280x800; ``pages``
  opens more of them (another user at the same time). A test fails on any uncaught error of a
  page (an exception or an unhandled rejection) and on any ``console.error``, other than the
  browser's own notes about failed requests (a wrong password is a 401 on purpose).
- ``relay``: a TCP relay in front of the stand's server whose connections a test can cut and
  let back (:class:`Relay`): a network fault the page cannot tell from a real one.
- :func:`shot` writes a PNG of the page at 1280x800 and at 375x812 into the run's folder
  (``$APPYARD_SCREENSHOTS``, else ``<repo>/test-artifacts/screenshots``); the folder is named at
  the end of the run. A failed test leaves a picture of each of its pages in ``failures/``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import pytest
from PIL import Image

import appyard as ay
from tests.screenshots import SHOTS
from tests.support import APPS, Client, ServerProc, World, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright

ECOSYSTEM = Path(ay.__file__).parent / "ecosystem"
CHROMIUM = os.environ.get("APPYARD_CHROMIUM") or "/usr/bin/chromium"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 375, "height": 812}
PASSWORD = "correct horse battery"
HELLO_RELEASES = ("1.1.0", "1.0.0")  # newest first
#: how long a page may take to show what a test waits for (ms); generous for a busy CI machine
TIMEOUT_MS = 20_000

_errors_key = pytest.StashKey[list[str]]()
_pages_key = pytest.StashKey[list["Page"]]()
_failed_key = pytest.StashKey[bool]()


# -- the browser ---------------------------------------------------------------------------------


def _no_browser(reason: str) -> NoReturn:
    """Skip here; fail under CI, which must run the browser tests."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Per module: Playwright's sync API keeps an event loop running in this thread while it
    is open, and a later test file of the same worker process may call ``asyncio.run``."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _no_browser("Playwright is not installed (pip install -e '.[dev]')")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _no_browser(
            f"there is no Chromium at {CHROMIUM} (apt-get install chromium, "
            "or set APPYARD_CHROMIUM to its path)"
        )
    b = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        headless=True,
    )
    yield b
    b.close()


def _is_page_fault(msg: ConsoleMessage) -> bool:
    """A ``console.error`` of the page's own code (not the browser's note of a 4xx/5xx)."""
    return msg.type == "error" and not msg.text.startswith("Failed to load resource")


@pytest.fixture
def pages(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[[], Page]]:
    """Open a fresh page (own context, nobody signed in) at 1280x800; closed after the test."""
    errors = request.node.stash.setdefault(_errors_key, [])
    opened = request.node.stash.setdefault(_pages_key, [])
    contexts = []

    def open_page() -> Page:
        ctx = browser.new_context(viewport=WIDE, locale="en-US")  # type: ignore[arg-type]
        ctx.set_default_timeout(TIMEOUT_MS)
        contexts.append(ctx)
        page = ctx.new_page()
        n = len(opened) + 1
        page.on("pageerror", lambda e: errors.append(f"page {n}: uncaught {e.name}: {e.message}"))
        page.on(
            "console",
            lambda m: (
                errors.append(f"page {n}: console.error: {m.text}") if _is_page_fault(m) else None
            ),
        )
        opened.append(page)
        return page

    yield open_page
    if request.node.stash.get(_failed_key, False):
        for i, page in enumerate(opened, 1):
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            path = _folder() / "failures" / f"{name}-page{i}.png"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(path), full_page=True)
            except Exception:  # a picture of a broken page is a bonus
                pass
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def page(pages: Callable[[], Page]) -> Page:
    return pages()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Fail a test whose pages threw, even when its own asserts passed."""
    try:
        result = yield
    except BaseException:
        errors = item.stash.get(_errors_key, [])
        if errors:
            item.add_report_section("call", "page errors", "\n".join(errors))
        raise
    errors = item.stash.get(_errors_key, [])
    if errors:
        raise AssertionError("errors in the page:\n" + "\n".join(errors))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_failed_key] = True
    return report


# -- screenshots and page helpers ------------------------------------------------------------


def _folder() -> Path:
    """The screenshots folder (an earlier run's pictures were deleted as this run started)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


def shot(page: Page, name: str, full_page: bool = True) -> list[Path]:
    """Write ``<name>-wide.png`` (1280x800) and ``<name>-narrow.png`` (375x812) of the page.

    The narrow one checks on the way that the page does not overflow sideways.
    """
    _folder()
    before = page.viewport_size or WIDE
    out = []
    try:
        for suffix, size in (("wide", WIDE), ("narrow", NARROW)):
            page.set_viewport_size(size)  # type: ignore[arg-type]
            page.evaluate("() => new Promise((r) => requestAnimationFrame(() => r(null)))")
            path = SHOTS / f"{name}-{suffix}.png"
            page.screenshot(path=str(path), full_page=full_page)
            with Image.open(io.BytesIO(path.read_bytes())) as img:
                assert img.width == size["width"], (
                    f"{name}: the page is {img.width} px wide at a {size['width']} px viewport "
                    "(something overflows sideways)"
                )
            out.append(path)
    finally:
        page.set_viewport_size(before)  # type: ignore[arg-type]
    return out


def mark(page: Page) -> None:
    """Mark the loaded document; :func:`not_reloaded` checks that the mark is still there."""
    page.evaluate("() => { window.__mark = 1; }")


def not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("() => window.__mark === 1"))


# -- the stand: server, team, users, agent, apps ------------------------------------------------


@dataclass
class Stand:
    server: ServerProc
    world: World
    api: ay.Api  # the admin's SDK client
    agent_id: int
    agent_name: str
    hello_id: int
    worker_id: int
    viewer_app_id: int  # project-viewer
    lines_id: int  # many-lines
    project_id: int
    project_name: str
    roles: dict[str, str] = field(default_factory=dict)  # login -> role in the team
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def team_id(self) -> int:
        return self.world.team_id

    @property
    def workspace_id(self) -> int:
        return self.world.workspace_id

    def token(self, login: str) -> str:
        """A token of ``login``, got the way the UI gets one: password sign-in."""
        if login not in self._tokens:
            r = httpx.post(
                f"{self.url}/api/v1/auth/login",
                json={"login": login, "password": PASSWORD},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            self._tokens[login] = r.json()["token"]
        return self._tokens[login]

    def client(self, login: str) -> Client:
        return Client(self.url, self.token(login))

    def sdk(self, login: str) -> ay.Api:
        return ay.Api(self.url, self.token(login))

    def sign_in(self, page: Page, login: str) -> None:
        """Sign ``login`` in through the login page; returns on the ecosystem page."""
        page.goto(f"{self.url}/#/login")
        page.get_by_role("textbox", name="Login", exact=True).fill(login)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.wait_for_url(re.compile(r"#/ecosystem$"))
        # the ecosystem page drawn: what a test does next is not raced by its first render
        from playwright.sync_api import expect

        expect(page.get_by_role("heading", name="Ecosystem", level=1)).to_be_visible()
        expect(
            page.get_by_role("status").filter(has_text=re.compile(r"\d+ apps?$"))
        ).to_be_visible()

    def start(
        self, module_id: int, login: str = "dev", agent_id: int | None = None, **state: Any
    ) -> int:
        """Start a session through the API (as ``login``) on the stand's agent (or on
        ``agent_id``) with ``state`` over the defaults; its task id."""
        api = self.sdk(login)
        params = api.app.get_ecosystem_module_info(module_id).get_arguments()
        started = api.app.start(
            agent_id=agent_id or self.agent_id,
            module_id=module_id,
            workspace_id=self.workspace_id,
            params={**params, **state},
            task_name="from-the-tests",
        )
        return started.task_id

    def status(self, task_id: int) -> str:
        return str(self.api.task.get_info_by_id(task_id)["status"])

    def agent_online(self, agent_id: int) -> bool:
        return any(
            a.id == agent_id and a.status == "online" for a in self.api.agent.get_list(self.team_id)
        )


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    home = tmp_path_factory.mktemp("web-server")
    server = ServerProc(home).start()
    try:
        admin = Client(server.url, server.admin_token)
        team = admin.ok("POST", "/teams", json={"name": "web team"})
        ws = admin.ok("POST", f"/teams/{team['id']}/workspaces", json={"name": "main"})
        world = World(server, admin, team["id"], ws["id"], tmp_path_factory.mktemp("web-world"))
        roles = {"dev": "developer", "viewer": "viewer"}
        for login, role in roles.items():
            admin.ok("POST", "/users", json={"login": login, "password": PASSWORD})
            admin.ok("POST", f"/teams/{team['id']}/members", json={"login": login, "role": role})
        api = ay.Api(server.url, server.admin_token)
        # two releases of hello: the module page lists both, the newest is the default
        admin.publish(ECOSYSTEM / "hello", version=HELLO_RELEASES[1])
        hello = admin.publish(ECOSYSTEM / "hello", version=HELLO_RELEASES[0])["module_id"]
        viewer_app = admin.publish(ECOSYSTEM / "project-viewer")["module_id"]
        worker = admin.publish(APPS / "worker")["module_id"]
        lines = admin.publish(APPS / "many-lines")["module_id"]
        project = api.project.create(ws["id"], "Street scenes")
        agent_name = "web-agent"
        agent_id, token = world.new_agent_token(agent_name)
        agent = world.start_agent(token, name=agent_name, slots=4)
        wait_for(
            lambda: any(
                a.id == agent_id and a.status == "online" for a in api.agent.get_list(team["id"])
            ),
            30,
            f"agent {agent_name} to come online:\n{agent.log_text}",
        )
        s = Stand(
            server=server,
            world=world,
            api=api,
            agent_id=agent_id,
            agent_name=agent_name,
            hello_id=hello,
            worker_id=worker,
            viewer_app_id=viewer_app,
            lines_id=lines,
            project_id=project.id,
            project_name=project.name,
            roles=roles,
        )
        yield s
        # stop what still runs, through the API (the real stop protocol), then the agents
        page_ = admin.ok("GET", "/tasks", params={"team_id": team["id"], "limit": 500})
        running = [t for t in page_["items"] if t["status"] not in ("finished", "error", "stopped")]
        for t in running:
            admin.http.post(f"/tasks/{t['id']}/stop")
        for t in running:
            admin.http.get(f"/tasks/{t['id']}/wait", params={"timeout": 15})
        for a in world.agents:
            a.stop()
        api.close()
    finally:
        server.stop()


# -- a relay whose connections a test can cut -----------------------------------------------------


class Relay:
    """A TCP relay to ``127.0.0.1:port``. :meth:`cut` closes every connection through it and
    closes new ones at once (the page sees a dropped network) until :meth:`mend`."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.broken = threading.Event()
        self.lock = threading.Lock()
        self.live: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            if self.broken.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _close(client)
                continue
            with self.lock:
                self.live |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self.lock:
                self.live -= {src, dst}
            _close(src)
            _close(dst)

    def cut(self) -> None:
        self.broken.set()
        with self.lock:
            socks, self.live = self.live, set()
        for s in socks:
            _close(s)

    def mend(self) -> None:
        self.broken.clear()

    def close(self) -> None:
        _close(self.server)
        self.cut()


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()


@pytest.fixture
def relay(stand: Stand) -> Iterator[Relay]:
    r = Relay(stand.server.port)
    yield r
    r.close()

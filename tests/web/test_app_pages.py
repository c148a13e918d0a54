"""A running app's own page through the server, in Chromium: the session page's "App page"
opens it on an origin of its own (``<task_id>.apps.localhost``); the project viewer's images
load and its links work under ``/apps/<task_id>/``; a page cannot read the platform's token or
call its API as the user, on its own origin or sandboxed on the platform's."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import Page, expect

from tests.web.conftest import Stand, shot

PAGE_APP = Path(__file__).resolve().parents[1] / "e2e" / "apps" / "page"


def _png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def _open_app_page(stand: Stand, page: Page, tid: int) -> Page:
    """Sign in as the team's viewer, open the session's page and click "Open the app page"."""
    stand.sign_in(page, "viewer")
    page.goto(f"{stand.url}/#/sessions/{tid}")
    link = page.get_by_role("link", name="Open the app page")
    with page.context.expect_page() as opened:
        link.click()
    app = opened.value
    app.wait_for_url(f"**/apps/{tid}/")
    return app


def test_the_project_viewer_through_the_server(stand: Stand, page: Page) -> None:
    api = stand.api
    project = api.project.create(stand.workspace_id, "Viewer through the server")
    api.project.update_meta(
        project.id, {"classes": [{"name": "box", "shape": "rectangle", "color": "#E53935"}]}
    )
    ds = api.dataset.create(project.id, "day")
    first = api.image.upload_bytes(ds.id, "first.png", _png((64, 48), (90, 140, 200)))
    api.image.upload_bytes(ds.id, "second.png", _png((48, 48), (200, 200, 200)))
    box = {"type": "rectangle", "left": 8, "top": 8, "right": 40, "bottom": 30}
    api.annotation.upload_json(
        first.id,
        {"size": {"width": 64, "height": 48}, "objects": [{"class": "box", "geometry": box}]},
    )
    dev = stand.sdk("dev")
    info = dev.app.get_ecosystem_module_info(stand.viewer_app_id)
    tid = dev.app.start(
        agent_id=stand.agent_id,
        module_id=stand.viewer_app_id,
        workspace_id=stand.workspace_id,
        params=info.get_arguments(images_project=project.id),
    ).task_id
    assert api.app.wait_until_ready_for_api_calls(tid, 60, 1)

    app = _open_app_page(stand, page, tid)
    origin = f"http://{tid}.apps.localhost:{stand.server.port}"
    assert app.url == f"{origin}/apps/{tid}/", app.url  # the ticket is gone from the address
    expect(app.get_by_role("heading", name=project.name, level=1)).to_be_visible()
    images = app.locator("img")
    expect(images).to_have_count(2)
    for i in range(2):
        expect(images.nth(i)).to_have_js_property("complete", True)
        assert images.nth(i).evaluate("img => img.naturalWidth") > 0
    shot(app, "30-app-page-project-viewer")

    # a link under the prefix: the image, drawn
    with app.expect_navigation():
        app.get_by_role("link", name="first.png").click()
    assert app.url == f"{origin}/apps/{tid}/images/{first.id}.png"
    # a page of the dataset, and back to the project from it
    app.goto(f"{origin}/apps/{tid}/datasets/{ds.id}")
    expect(app.get_by_role("heading", name="day", level=1)).to_be_visible()
    app.get_by_role("link", name="back to the project").click()
    app.wait_for_url(f"{origin}/apps/{tid}/")
    expect(app.get_by_role("heading", name=project.name, level=1)).to_be_visible()
    api.app.stop(tid)


def _probe(app: Page) -> dict[str, Any]:
    expect(app).to_have_title("probed")
    data: dict[str, Any] = json.loads(app.evaluate("document.body.dataset.probe"))
    return data


def test_an_app_page_cannot_read_the_token_or_call_the_api(stand: Stand, page: Page) -> None:
    """The probe page's script tries ``document.cookie``, ``localStorage`` and the API with
    the browser's credentials; signed in to the web UI all the while."""
    module_id = stand.world.admin.publish(PAGE_APP)["module_id"]
    tid = stand.start(module_id)
    assert stand.api.app.wait_until_ready_for_api_calls(tid, 60, 1)

    # on its own origin: none of the platform's storage, and the platform is not served there
    app = _open_app_page(stand, page, tid)
    token = page.evaluate("localStorage.getItem('appyard.token')")
    assert token and token.startswith("ayu_")
    own = _probe(app)
    assert own["origin"] == f"http://{tid}.apps.localhost:{stand.server.port}"
    assert own["cookie"] == ""  # the page's cookie is HttpOnly
    assert own["token"] is None
    assert own["api"].startswith("404 ")
    assert token not in json.dumps(own)
    shot(app, "31-app-page-probe")

    # on the platform's own origin (an address outside the loopback default, or opened by
    # hand): sandboxed, an opaque origin that can read nothing of the platform's
    link = stand.client("viewer").ok("POST", f"/tasks/{tid}/app-page")
    ticket = link["url"].split("?", 1)[1]
    same = page.context.new_page()
    same.goto(f"{stand.url}/apps/{tid}/?{ticket}")
    assert same.url == f"{stand.url}/apps/{tid}/"
    boxed = _probe(same)
    assert boxed["origin"] == "null"
    assert boxed["cookie"].startswith("blocked: SecurityError")
    assert boxed["token"].startswith("blocked: SecurityError")
    assert boxed["api"].startswith("blocked: ")  # no CORS for an opaque origin: unreadable
    assert boxed["api_bearer"] != 200
    # its links still work (a navigation carries the page's cookie)
    same.locator("#go").click()
    same.wait_for_url(f"{stand.url}/apps/{tid}/headers")
    headers = dict(json.loads(same.locator("body").inner_text())["headers"])
    assert "authorization" not in headers and "appyard_app" not in headers.get("cookie", "")
    stand.api.app.stop(tid)


def test_an_app_page_websocket_through_the_server(stand: Stand, page: Page) -> None:
    """The page's script opens a websocket relative to its own address (``ws/echo``, under
    ``/apps/<id>/``) on the page's own origin, signed in by the page's cookie: the app's echo
    comes back with the subprotocol the app chose."""
    module_id = stand.world.admin.publish(PAGE_APP)["module_id"]
    tid = stand.start(module_id)
    assert stand.api.app.wait_until_ready_for_api_calls(tid, 60, 1)
    app = _open_app_page(stand, page, tid)
    app.goto(f"http://{tid}.apps.localhost:{stand.server.port}/apps/{tid}/ws-page")
    expect(app.locator("#echo")).to_have_text("echo: hello from the page (echo.v1)")
    shot(app, "32-app-page-websocket")
    # the session stops: the page's websocket is closed, saying why
    stand.api.app.stop(tid)
    expect(app.locator("body")).to_have_attribute(
        "data-closed",
        re.compile(rf"^4409 task {tid}: the session is (terminating|stopped); its page is gone$"),
        timeout=15_000,
    )

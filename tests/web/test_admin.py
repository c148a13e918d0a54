"""The admin controls of the web UI, and old data shown safely, in real headless Chromium on a
real server with a real agent.

A team admin lists members and the team's tokens, revokes a token and removes a member; an
instance admin disables and enables a user; a team admin rotates an agent's token; a non-admin
sees none of these controls, and a refusal of the server shows as its message. What the page
claims is checked through the API (a revoked token gets a 401). Nothing sleeps: Playwright's
``expect`` waits for what should show, and :func:`wait_for` for conditions outside the page.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable
from typing import Any

import httpx
import pytest

try:
    from playwright.sync_api import Locator, Page, expect
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)

from tests.support import Client, wait_for
from tests.web.conftest import PASSWORD, Stand, shot


def _user(stand: Stand, login: str, role: str | None, *, is_admin: bool = False) -> int:
    """The id of user ``login`` (with :data:`PASSWORD`), made once, a ``role`` member of the
    stand's team when a role is given."""
    admin = stand.world.admin
    found = [u for u in admin.ok("GET", "/users") if u["login"] == login]
    if found:
        return int(found[0]["id"])
    body: dict[str, Any] = {"login": login, "password": PASSWORD, "is_admin": is_admin}
    uid = int(admin.ok("POST", "/users", json=body)["id"])
    if role:
        admin.ok("POST", f"/teams/{stand.team_id}/members", json={"login": login, "role": role})
    return uid


def _api_token(stand: Stand, user_id: int, name: str) -> str:
    """A new API token of the user, minted by the instance admin."""
    created = stand.world.admin.ok("POST", "/tokens", json={"name": name, "user_id": user_id})
    return str(created["token"])


def _status(stand: Stand, token: str, path: str = "/users/me") -> int:
    return int(Client(stand.url, token).get(path).status_code)


def _to(page: Page, link: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=link, exact=True).click()


def _row(page: Page, table: Locator, header: str) -> Locator:
    """The row of ``table`` whose row header is ``header``."""
    return table.get_by_role("row").filter(
        has=page.get_by_role("rowheader", name=re.compile(rf"^{re.escape(header)}( \(.*\))?$"))
    )


def _confirm(page: Page, title: str | re.Pattern[str], verb: str, picture: str = "") -> None:
    dialog = page.get_by_role("dialog", name=title)
    expect(dialog).to_be_visible()
    if picture:
        shot(page, picture, full_page=False)
    dialog.get_by_role("button", name=verb, exact=True).click()
    expect(dialog).to_have_count(0)


# -- a team admin ------------------------------------------------------------------------------


def test_a_team_admin_revokes_a_token_and_removes_a_member(stand: Stand, page: Page) -> None:
    _user(stand, "boss", "admin")
    leaver = _user(stand, "leaver", "developer")
    laptop = _api_token(stand, leaver, "leaver-laptop")
    assert _status(stand, laptop) == 200

    stand.sign_in(page, "boss")
    _to(page, "Team")
    expect(page.get_by_role("heading", name="Team web team", level=1)).to_be_visible()
    members = page.get_by_role("table", name="Members")
    expect(members.get_by_role("columnheader")).to_have_text(["Login", "Role", "State", "Actions"])
    leaver_row = _row(page, members, "leaver")
    expect(leaver_row).to_contain_text("developer")
    expect(_row(page, members, "boss")).to_contain_text("(you)")

    # the team's tokens: kind and owner, never a secret
    tokens = page.get_by_role("table", name="Tokens")
    laptop_row = _row(page, tokens, "leaver-laptop")
    expect(laptop_row.get_by_role("cell").nth(0)).to_have_text("user")
    expect(laptop_row.get_by_role("cell").nth(1)).to_have_text("leaver")
    agent_rows = tokens.get_by_role("row").filter(has_text=f"agent {stand.agent_name}")
    expect(agent_rows).to_have_count(1)
    expect(agent_rows.get_by_role("cell").nth(0)).to_have_text("agent")
    assert laptop not in page.content()
    assert stand.token("boss") not in page.content()
    shot(page, "12-team-admin")

    # revoke: asked first; Cancel keeps the token
    revoke = laptop_row.get_by_role("button", name="Revoke token leaver-laptop of leaver")
    revoke.click()
    dialog = page.get_by_role("dialog", name="Revoke token “leaver-laptop” of leaver?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert _status(stand, laptop) == 200
    revoke.click()
    _confirm(page, "Revoke token “leaver-laptop” of leaver?", "Revoke", "12-team-revoke-dialog")
    expect(laptop_row).to_have_count(0)
    assert _status(stand, laptop) == 401

    # remove the member: gone from the page and from the team
    leaver_row.get_by_role("button", name="Remove leaver").click()
    _confirm(page, "Remove leaver from team web team?", "Remove")
    expect(leaver_row).to_have_count(0)
    listed = stand.world.admin.ok("GET", f"/teams/{stand.team_id}/members")
    assert "leaver" not in [m["login"] for m in listed]

    # a team keeps an admin: the server's refusal shows as its message
    solo = stand.client("boss").ok("POST", "/teams", json={"name": "boss only"})
    page.reload()
    page.get_by_role("combobox", name="Team").select_option(label="boss only (admin)")
    expect(page.get_by_role("heading", name="Team boss only", level=1)).to_be_visible()
    members = page.get_by_role("table", name="Members")
    _row(page, members, "boss").get_by_role("button", name="Remove boss").click()
    _confirm(page, "Leave team boss only?", "Remove")
    alert = page.get_by_role("main").get_by_role("alert")
    expect(alert).to_have_text(
        f"Team {solo['id']} would have no admin left: make another member admin first."
    )
    shot(page, "12-team-last-admin")
    solo_members = stand.world.admin.ok("GET", f"/teams/{solo['id']}/members")
    assert [m["login"] for m in solo_members] == ["boss"]


# -- an instance admin -------------------------------------------------------------------------


def test_an_instance_admin_disables_and_enables_a_user(stand: Stand, page: Page) -> None:
    _user(stand, "root", None, is_admin=True)
    victim = _user(stand, "victim", "viewer")
    script = _api_token(stand, victim, "victim-script")
    signed_in = stand.token("victim")
    assert _status(stand, script) == 200 and _status(stand, signed_in) == 200

    stand.sign_in(page, "root")
    _to(page, "Team")
    members = page.get_by_role("table", name="Members")
    row = _row(page, members, "victim")
    expect(row.get_by_role("cell").nth(1)).to_have_text("active")
    row.get_by_role("button", name="Disable victim").click()
    _confirm(page, "Disable user victim?", "Disable", "13-team-disable-dialog")
    expect(row.get_by_role("cell").nth(1)).to_have_text("disabled")
    # every token of the user dies at once
    assert _status(stand, script) == 401
    assert _status(stand, signed_in) == 401
    shot(page, "13-team-user-disabled")

    row.get_by_role("button", name="Enable victim").click()
    _confirm(page, "Enable user victim?", "Enable")
    expect(row.get_by_role("cell").nth(1)).to_have_text("active")
    # the user signs in again; the old tokens stay revoked
    again = httpx.post(
        f"{stand.url}/api/v1/auth/login", json={"login": "victim", "password": PASSWORD}
    )
    assert again.status_code == 200, again.text
    assert _status(stand, script) == 401


# -- agents ------------------------------------------------------------------------------------


def test_a_team_admin_rotates_an_agent_token(stand: Stand, page: Page) -> None:
    _user(stand, "boss", "admin")
    agent_id, old = stand.world.new_agent_token("spare")
    assert _status(stand, old, "/agents/me") == 200

    stand.sign_in(page, "boss")
    _to(page, "Agents")
    table = page.get_by_role("table", name="Agents")
    row = _row(page, table, "spare")
    row.get_by_role("button", name="Rotate token of spare").click()
    _confirm(page, "Rotate the token of agent spare?", "Rotate token", "14-agent-rotate-dialog")

    box = page.get_by_role("region", name="New token for agent spare")
    expect(box).to_be_focused()
    expect(box).to_contain_text("shown only now")
    expect(box.get_by_role("button", name="Copy the command")).to_be_visible()
    command = box.locator("code").first.inner_text()
    found = re.fullmatch(
        rf"appyard agent run --server {re.escape(stand.url)} --token (\S+) --slots \d+",
        command.strip(),
    )
    assert found, command
    new = found.group(1)
    assert new != old
    assert _status(stand, old, "/agents/me") == 401
    me = Client(stand.url, new).ok("GET", "/agents/me")
    assert me["id"] == agent_id
    shot(page, "14-agent-rotated")


# -- a non-admin -------------------------------------------------------------------------------


def test_a_non_admin_sees_no_admin_controls(stand: Stand, pages: Callable[[], Page]) -> None:
    page = pages()
    stand.sign_in(page, "dev")
    _to(page, "Team")
    main = page.get_by_role("main")
    members = page.get_by_role("table", name="Members")
    expect(_row(page, members, "dev")).to_contain_text("developer")
    expect(members.get_by_role("columnheader")).to_have_text(["Login", "Role", "State"])
    expect(main).to_contain_text("A team admin manages the members and the tokens")
    expect(main.get_by_role("button")).to_have_count(0)
    expect(main).not_to_contain_text("undefined")
    expect(page.get_by_role("table", name="Tokens")).to_have_count(0)
    shot(page, "15-team-non-admin")

    _to(page, "Agents")
    agents = page.get_by_role("table", name="Agents")
    expect(agents).to_contain_text(stand.agent_name)
    expect(agents.get_by_role("columnheader", name="Token")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Rotate token"))).to_have_count(0)

    # an admin demoted while the page is open: the server refuses, and the page says why
    _user(stand, "deputy", "admin")
    _user(stand, "temp", "viewer")
    deputy = pages()
    stand.sign_in(deputy, "deputy")
    _to(deputy, "Team")
    row = _row(deputy, deputy.get_by_role("table", name="Members"), "temp")
    remove = row.get_by_role("button", name="Remove temp")
    expect(remove).to_be_visible()
    stand.world.admin.ok(
        "POST", f"/teams/{stand.team_id}/members", json={"login": "deputy", "role": "developer"}
    )
    remove.click()
    _confirm(deputy, "Remove temp from team web team?", "Remove")
    expect(deputy.get_by_role("main").get_by_role("alert")).to_have_text(
        re.compile(r"^Your role in team \d+ is developer; this needs admin or higher\.")
    )
    expect(row).to_be_visible()
    listed = stand.world.admin.ok("GET", f"/teams/{stand.team_id}/members")
    assert "temp" in [m["login"] for m in listed]
    shot(deputy, "15-team-refused")


# -- old data ----------------------------------------------------------------------------------


def test_an_old_javascript_app_page_address_is_never_a_link(stand: Stand, page: Page) -> None:
    """A ``ready_url`` stored before the server checked it is never made a link: the app page
    opens through the server's proxy (``/apps/<id>/``), whatever the row holds."""
    tid = stand.start(stand.worker_id, ready=True, sleep_s=600)
    wait_for(lambda: stand.api.task.get(tid).ready, 60, "the worker to be ready")
    evil = "javascript:alert(document.domain)"
    db = sqlite3.connect(stand.server.home / "appyard.db", timeout=30)
    try:
        with db:
            db.execute("UPDATE tasks SET ready_url = ? WHERE id = ?", (evil, tid))
    finally:
        db.close()
    assert stand.api.task.get_info_by_id(tid)["ready_url"] == evil

    stand.sign_in(page, "dev")
    page.goto(f"{stand.url}/#/sessions/{tid}")
    outputs = page.get_by_role("region", name="Outputs")
    expect(outputs.get_by_role("link", name="Open the app page")).to_have_attribute(
        "href", f"/apps/{tid}/"
    )
    hrefs = page.evaluate(
        "() => [...document.querySelectorAll('[href]')].map((e) => e.getAttribute('href'))"
    )
    assert not [h for h in hrefs if h.strip().lower().startswith("javascript:")], hrefs
    shot(page, "16-session-old-app-page-address")
    stand.api.app.stop(tid)
    wait_for(lambda: stand.status(tid) == "stopped", 60, "the worker to stop")

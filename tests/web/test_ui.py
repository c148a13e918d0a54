"""The web UI in real headless Chromium, on a real server with a real agent and real apps.

Every step goes through the page the way a person would (roles, labels, visible text); the API
is used only to set things up and to check what the page claims. Nothing sleeps: Playwright's
``expect`` waits for what should show, and :func:`wait_for` for conditions outside the page.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

try:
    from playwright.sync_api import Locator, Page, Route, expect
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)

from tests.support import APPS, Client, alive, processes_of, wait_for
from tests.web.conftest import (
    ECOSYSTEM,
    HELLO_RELEASES,
    PASSWORD,
    Relay,
    Stand,
    mark,
    not_reloaded,
    shot,
)


def _hash(path: str) -> re.Pattern[str]:
    """A matcher of the page's address ending in the hash route ``path``."""
    return re.compile(re.escape(f"#{path}") + r"$")


# -- signing in and out ------------------------------------------------------------------------


def test_sign_in_with_a_password_and_sign_out(stand: Stand, page: Page) -> None:
    page.goto(stand.url)
    expect(page).to_have_url(_hash("/login"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "01-login")

    # a wrong password: an error on the page, still signed out
    page.get_by_role("textbox", name="Login", exact=True).fill("dev")
    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong login or password")
    expect(page).to_have_url(_hash("/login"))
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(_hash("/ecosystem"))
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_role("banner")).to_contain_text("dev")
    token = page.evaluate("() => localStorage.getItem('appyard.token')")
    assert isinstance(token, str) and token
    assert Client(stand.url, token).get("/users/me").json()["login"] == "dev"

    # a reload keeps the user signed in
    page.reload()
    expect(page.get_by_role("heading", name="Ecosystem")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(_hash("/login"))
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert page.evaluate("() => localStorage.getItem('appyard.token')") is None
    # the token the sign-in minted is revoked, not only forgotten
    assert Client(stand.url, token).get("/users/me").status_code == 401
    # and a signed-out visitor of a page is sent to the login page (which sends them back)
    page.goto(f"{stand.url}/#/sessions")
    expect(page).to_have_url(_hash("/login?next=%2Fsessions"))


def test_sign_in_with_a_token(stand: Stand, page: Page) -> None:
    page.goto(f"{stand.url}/#/login")
    # a token that is not valid: the page says so in its own words (no command to type)
    page.get_by_role("textbox", name="Token", exact=True).fill("ayu_not-a-real-token")
    page.get_by_role("button", name="Use the token").click()
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(re.compile(r"^This token is not valid"))
    expect(alert).not_to_contain_text("appyard")
    expect(page).to_have_url(_hash("/login"))

    page.get_by_role("textbox", name="Token", exact=True).fill(stand.token("viewer"))
    page.get_by_role("button", name="Use the token").click()
    expect(page).to_have_url(_hash("/ecosystem"))
    expect(page.get_by_role("banner")).to_contain_text("viewer")
    # a token the user pasted is forgotten at sign-out, not revoked
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(_hash("/login"))
    assert stand.client("viewer").get("/users/me").status_code == 200


def test_a_deep_link_survives_signing_in(stand: Stand, page: Page) -> None:
    tid = stand.start(stand.hello_id, name="deep link", count=1, delay_s=0)
    page.goto(f"{stand.url}/#/sessions/{tid}")
    expect(page).to_have_url(_hash(f"/login?next=%2Fsessions%2F{tid}"))
    page.get_by_role("textbox", name="Login", exact=True).fill("dev")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(_hash(f"/sessions/{tid}"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"#{tid} from-the-tests")
    expect(_badge(page)).to_have_text("finished")


def test_an_unreachable_server_is_said_plainly(stand: Stand, page: Page) -> None:
    stand.sign_in(page, "dev")
    page.route("**/api/v1/modules*", lambda route: route.abort("connectionrefused"))
    page.goto(f"{stand.url}/#/agents")  # another page first, so the next one is drawn anew
    expect(page.get_by_role("heading", name="Agents", level=1)).to_be_visible()
    page.goto(f"{stand.url}/#/ecosystem")
    expect(page.get_by_role("alert")).to_have_text(
        "The appyard server cannot be reached. Check the connection, then try again."
    )


# -- the ecosystem and a module's page -------------------------------------------------------------


def test_ecosystem_cards_and_the_module_page(stand: Stand, page: Page) -> None:
    stand.sign_in(page, "dev")
    apps = page.get_by_role("list", name="Apps")
    names = ["Hello", "Many lines", "Project viewer", "Test worker"]
    for name in names:
        expect(apps.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(apps.get_by_role("heading", level=2)).to_have_count(len(names))
    hello = apps.get_by_role("listitem").filter(
        has=page.get_by_role("link", name="Hello", exact=True)
    )
    expect(hello).to_contain_text("Greets, counts to a number")  # the description
    expect(hello).to_contain_text("examples")  # its category
    expect(hello).to_contain_text(HELLO_RELEASES[0])  # the latest release
    shot(page, "02-ecosystem")

    # the search narrows the cards
    page.get_by_role("searchbox", name="Search apps").fill("viewer")
    expect(apps.get_by_role("link", name="Project viewer", exact=True)).to_be_visible()
    expect(apps.get_by_role("link", name="Hello", exact=True)).to_be_hidden()
    page.get_by_role("searchbox", name="Search apps").fill("")

    apps.get_by_role("link", name="Hello", exact=True).click()
    expect(page).to_have_url(_hash(f"/apps/{stand.hello_id}"))
    main = page.get_by_role("main")
    expect(main.get_by_role("heading", name="Hello", level=1)).to_be_visible()
    expect(main.get_by_role("region", name="Readme")).to_contain_text("A first app to run")
    options = main.get_by_role("region", name="Options")
    for key, default in (("name", '"world"'), ("count", "5"), ("delay_s", "0.2")):
        row = options.get_by_role("row").filter(has=page.get_by_text(key, exact=True))
        expect(row).to_contain_text(default)
    releases = main.get_by_role("region", name="Releases")
    for version in HELLO_RELEASES:
        expect(
            releases.get_by_role("cell", name=re.compile(f"^{re.escape(version)}"))
        ).to_be_visible()
    expect(main.get_by_role("region", name="Targets")).to_be_visible()
    expect(main.get_by_role("link", name="Run", exact=True)).to_be_visible()
    shot(page, "03-module")


# -- the run dialog and a session, live ----------------------------------------------------------


def _badge(page: Page) -> Locator:
    """The session page's status badge, beside its title.

    It has no accessible name of its own, so this is the one place that reads the page's
    markup (``data-status`` of the badge in the title's row).
    """
    return page.get_by_role("main").locator(".session-head [data-status]")


def _ready(page: Page) -> Locator:
    """The ``ready`` mark beside the status badge: a serving app said it is ready for calls."""
    return page.get_by_role("main").locator(".session-head [data-ready]")


def _log(page: Page) -> Locator:
    return page.get_by_role("region", name="Log", exact=True)


def _session_id(page: Page) -> int:
    expect(page).to_have_url(re.compile(r"#/sessions/\d+$"))
    found = re.search(r"#/sessions/(\d+)$", page.url)
    assert found, page.url
    return int(found.group(1))


def test_run_hello_from_the_dialog_and_watch_it_finish(stand: Stand, page: Page) -> None:
    # an agent that is not running yet: the session waits queued until the test starts it, so
    # the page is seen to change from queued to finished on its own, whatever the timing
    late_id, late_token = stand.world.new_agent_token("late-agent")

    stand.sign_in(page, "dev")
    mark(page)
    page.get_by_role("list", name="Apps").get_by_role("link", name="Hello", exact=True).click()
    page.get_by_role("link", name="Run", exact=True).click()
    expect(page).to_have_url(_hash(f"/apps/{stand.hello_id}/run"))
    expect(page.get_by_role("heading", name="Run Hello", level=1)).to_be_visible()

    # a field per option, with its default and the input of its type
    name = page.get_by_role("textbox", name="Name", exact=True)
    count = page.get_by_role("spinbutton", name="Count to", exact=True)
    style = page.get_by_role("combobox", name="Style", exact=True)
    expect(name).to_have_value("world")
    expect(count).to_have_value("5")
    expect(count).to_have_attribute("type", "number")
    expect(page.get_by_role("spinbutton", name="Delay (seconds)", exact=True)).to_have_value("0.2")
    expect(style.get_by_role("option")).to_have_text(["plain", "shout", "whisper"])
    release = page.get_by_role("combobox", name="Release", exact=True)
    expect(release.get_by_role("option")).to_have_count(len(HELLO_RELEASES))

    name.fill("browser")
    count.fill("3")
    style.select_option(label="shout")
    page.get_by_role("combobox", name="Agent", exact=True).select_option(value=str(late_id))
    page.get_by_role("textbox", name="Task name", exact=True).fill("greet the browser")
    shot(page, "04-run-dialog")

    page.get_by_role("button", name="Start", exact=True).click()
    tid = _session_id(page)
    expect(page.get_by_role("heading", level=1)).to_contain_text("greet the browser")
    expect(_badge(page)).to_have_text("queued")
    task = stand.api.task.get_info_by_id(tid)
    assert task["params"]["state"] == {
        "name": "browser",
        "count": 3,
        "delay_s": 0.2,
        "style": "shout",
    }
    assert task["version"] == HELLO_RELEASES[0]
    assert task["name"] == "greet the browser"

    late = stand.world.start_agent(late_token, name="late-agent")
    try:
        expect(_badge(page)).to_have_text("finished")
        timeline = page.get_by_role("list", name="Timeline")
        for step in ("queued", "started", "finished"):
            expect(timeline).to_contain_text(step)
        expect(page.get_by_role("progressbar", name="Progress")).to_have_attribute("value", "3")
        expect(page.get_by_role("region", name="Outputs")).to_contain_text("HELLO, BROWSER!")
        log = _log(page)
        expect(log).to_contain_text("HELLO, BROWSER!")
        expect(log).to_contain_text("3 of 3")
        expect(log).to_contain_text("complete")
        assert not_reloaded(page), "the page was reloaded"
        shot(page, "06-session")

        # the sessions table has it, finished
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Sessions").click()
        row = page.get_by_role("row").filter(
            has=page.get_by_role("link", name=f"#{tid}", exact=True)
        )
        expect(row).to_contain_text("finished")
        expect(row).to_contain_text("Hello")
        expect(row).to_contain_text("late-agent")
        expect(row).to_contain_text("dev")
        assert not_reloaded(page), "the page was reloaded"
    finally:
        late.stop()


def test_sessions_table_changes_live(stand: Stand, page: Page) -> None:
    # a session for an agent that is not running yet: it waits queued until the test starts it
    parked_id, parked_token = stand.world.new_agent_token("parked-agent")
    queued = stand.start(stand.hello_id, agent_id=parked_id, name="parked", count=1, delay_s=0)

    stand.sign_in(page, "dev")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sessions").click()
    expect(page.get_by_role("heading", name="Sessions", level=1)).to_be_visible()
    mark(page)
    table = page.get_by_role("table")
    expect(table.get_by_role("columnheader")).to_contain_text(
        ["Status", "App", "Agent", "User", "Started", "Duration"]
    )

    def row_of(tid: int) -> Locator:
        return table.get_by_role("row").filter(
            has=page.get_by_role("link", name=f"#{tid}", exact=True)
        )

    parked = row_of(queued)
    expect(parked).to_contain_text("queued")  # the first page is shown

    # a session started now appears on its own, first, and ends on its own
    tid = stand.start(stand.hello_id, name="table", count=2, delay_s=0.05)
    row = row_of(tid)
    expect(row).to_contain_text("Hello")
    expect(row).to_contain_text("finished")
    expect(table.get_by_role("row").nth(1)).to_contain_text(f"#{tid}")  # newest first

    # the queued one changes in place once its agent runs
    agent = stand.world.start_agent(parked_token, name="parked-agent")
    try:
        expect(parked).to_contain_text("finished")
        expect(parked).to_contain_text("parked-agent")
    finally:
        agent.stop()

    # filters: by app, by status
    worker_tid = stand.start(stand.worker_id, lines=1)
    worker_row = row_of(worker_tid)
    expect(worker_row).to_contain_text("finished")
    page.get_by_role("combobox", name="App", exact=True).select_option(label="Hello")
    expect(worker_row).to_have_count(0)
    expect(row).to_be_visible()
    page.get_by_role("combobox", name="Status", exact=True).select_option(label="error")
    expect(row).to_have_count(0)
    expect(page.get_by_text("No sessions match these filters.")).to_be_visible()
    page.get_by_role("combobox", name="Status", exact=True).select_option(label="finished")
    expect(row).to_be_visible()
    assert not_reloaded(page), "the page was reloaded"
    shot(page, "05-sessions")


def test_a_sessions_page_that_cannot_load_shows_no_stale_rows(
    stand: Stand, relay: Relay, page: Page
) -> None:
    """A filter changed while the server cannot be reached: the page says so, shows none of
    the rows it had (they belong to other filters), and loads once the user tries again."""
    hello = stand.start(stand.hello_id, name="stale", count=1, delay_s=0)
    worker = stand.start(stand.worker_id, lines=1)
    for tid in (hello, worker):
        wait_for(lambda tid=tid: stand.status(tid) == "finished", 60, "the sessions to end")
    # the page reaches the server through a relay: the test cuts the network there
    page.goto(f"{relay.url}/#/sessions")
    page.get_by_role("textbox", name="Login", exact=True).fill("dev")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    table = page.get_by_role("table")

    def row_of(tid: int) -> Locator:
        return table.get_by_role("row").filter(
            has=page.get_by_role("link", name=f"#{tid}", exact=True)
        )

    expect(row_of(hello)).to_contain_text("finished")
    expect(row_of(worker)).to_contain_text("finished")
    mark(page)

    relay.cut()
    page.get_by_role("combobox", name="App", exact=True).select_option(label="Hello")
    error = page.get_by_role("alert").filter(has_text="cannot be reached")
    expect(error).to_be_visible()
    expect(table.get_by_role("row").filter(has=page.get_by_role("link"))).to_have_count(0)
    expect(page.get_by_text("No sessions")).to_be_hidden()  # not "none": unknown
    shot(page, "05b-sessions-cannot-load", full_page=False)

    relay.mend()
    page.get_by_role("button", name="Try again", exact=True).click()
    expect(row_of(hello)).to_contain_text("finished")
    expect(row_of(worker)).to_have_count(0)  # the filter holds
    expect(error).to_have_count(0)
    assert not_reloaded(page), "the page was reloaded"


def test_an_api_refusal_shows_beside_its_field(stand: Stand, page: Page) -> None:
    stand.sign_in(page, "dev")
    page.goto(f"{stand.url}/#/apps/{stand.hello_id}/run")
    count = page.get_by_role("spinbutton", name="Count to", exact=True)
    style = page.get_by_role("combobox", name="Style", exact=True)

    # what the form can tell by itself, it says without asking the server
    count.fill("1e400")  # not a finite number
    page.get_by_role("button", name="Start", exact=True).click()
    expect(count).to_have_attribute("aria-invalid", "true")
    expect(count).to_have_accessible_description(re.compile("Enter a number"))
    count.fill("3")

    # the form offers only the manifest's choices, so the request is tampered with on its way
    # (as a stale or forged client would send it); the server's refusal names the field
    def tamper(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body["params"]["state"]["style"] = "sing"
        route.continue_(post_data=json.dumps(body))

    page.route("**/api/v1/tasks", tamper)
    with page.expect_response(
        lambda r: r.url.endswith("/api/v1/tasks") and r.request.method == "POST"
    ) as answer:
        page.get_by_role("button", name="Start", exact=True).click()
    refused = answer.value
    assert refused.status == 422, refused.status
    assert refused.json()["error"]["field"] == "params.state.style"
    expect(style).to_have_attribute("aria-invalid", "true")
    expect(style).to_have_accessible_description(re.compile("must be one of"))
    expect(count).not_to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(_hash(f"/apps/{stand.hello_id}/run"))  # still on the dialog
    shot(page, "04-run-dialog-error")

    # without the tampering the same form starts
    page.unroute("**/api/v1/tasks")
    page.get_by_role("combobox", name="Agent", exact=True).select_option(value=str(stand.agent_id))
    page.get_by_role("button", name="Start", exact=True).click()
    tid = _session_id(page)
    expect(_badge(page)).to_have_text("finished")
    assert stand.api.task.get_info_by_id(tid)["params"]["state"]["style"] == "plain"


def test_the_export_dialog_starts_on_the_dataset_picked(stand: Stand, page: Page) -> None:
    export_id = stand.api.module.publish(ECOSYSTEM / "export-to-pascal-voc").module_id
    harbour = stand.api.project.create(stand.workspace_id, "Harbour")
    stand.api.dataset.create(harbour.id, "day")
    night = stand.api.dataset.create(harbour.id, "night")
    # an agent that never runs: the session stays queued, and what it was started on is read
    parked_id, _ = stand.world.new_agent_token("export-parked")

    stand.sign_in(page, "dev")
    page.goto(f"{stand.url}/#/apps/{export_id}")
    options = page.get_by_role("main").get_by_role("region", name="Options")
    for title in ("Contour thickness (px)", "Share for training", "Prefix image names"):
        expect(options).to_contain_text(title)
    expect(options).to_contain_text("2t+1 pixels wide")
    page.get_by_role("link", name="Run", exact=True).click()
    expect(page.get_by_role("heading", name="Run Export to Pascal VOC", level=1)).to_be_visible()

    # the options by their titles, with their help
    thickness = page.get_by_role("spinbutton", name="Contour thickness (px)", exact=True)
    expect(thickness).to_have_value("3")
    expect(thickness).to_have_accessible_description(re.compile("2t\\+1 pixels wide"))
    expect(page.get_by_role("spinbutton", name="Share for training", exact=True)).to_have_value(
        "0.8"
    )
    expect(
        page.get_by_role("checkbox", name="Prefix image names with their dataset", exact=True)
    ).to_be_checked()

    # only the chosen target's picker shows: the project's, at first
    by_project = page.get_by_role("radio", name="An images project", exact=True)
    by_dataset = page.get_by_role("radio", name="An images dataset", exact=True)
    project = page.get_by_role("combobox", name="Project", exact=True)
    dataset_project = page.get_by_role("combobox", name="Project of the dataset", exact=True)
    dataset = page.get_by_role("combobox", name="Dataset", exact=True)
    summary = page.get_by_role("main").locator("#run-summary")
    expect(by_project).to_be_checked()
    expect(project).to_be_visible()
    expect(dataset_project).to_be_hidden()
    expect(dataset).to_be_hidden()
    project.select_option(label="Harbour")
    expect(summary).to_have_text("Starts on project “Harbour”.")

    # the dataset target: its pickers show, the project's goes
    by_dataset.check()
    expect(project).to_be_hidden()
    expect(dataset_project).to_be_visible()
    dataset_project.select_option(label="Harbour")
    expect(dataset.get_by_role("option")).to_have_text(["day", "night"])
    dataset.select_option(label="night")
    expect(summary).to_have_text("Starts on dataset “night” of project “Harbour”.")
    page.get_by_role("combobox", name="Agent", exact=True).select_option(value=str(parked_id))
    shot(page, "10-export-dialog")

    page.get_by_role("button", name="Start", exact=True).click()
    tid = _session_id(page)
    state = stand.api.task.get_info_by_id(tid)["params"]["state"]
    assert state["datasetId"] == night.id, state
    assert "projectId" not in state, state
    assert state["trainSplitCoef"] == 0.8 and state["addPrefixToImages"] is True, state
    stand.api.app.stop(tid)


def test_the_session_page_says_when_it_is_not_live(stand: Stand, relay: Relay, page: Page) -> None:
    dev = stand.sdk("dev")
    info = dev.app.get_ecosystem_module_info(stand.viewer_app_id)
    tid = dev.app.start(
        agent_id=stand.agent_id,
        module_id=stand.viewer_app_id,
        workspace_id=stand.workspace_id,
        params=info.get_arguments(images_project=stand.project_id),
    ).task_id
    # the page reaches the server through a relay: the test cuts the network there
    page.goto(f"{relay.url}/#/sessions/{tid}")
    page.get_by_role("textbox", name="Login", exact=True).fill("dev")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(_badge(page)).to_have_text("started")
    expect(_ready(page)).to_have_text("ready")
    log = _log(page)
    expect(log).to_contain_text("live")
    app_page = page.get_by_role("link", name="Open the app page")
    expect(app_page).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    mark(page)

    # the connection goes: the page says so at once, not "live"
    relay.cut()
    note = page.get_by_role("alert")
    expect(note).to_contain_text("The live connection to the server is broken")
    expect(log).to_contain_text("not live")
    shot(page, "11-session-not-live", full_page=False)

    # meanwhile the session is stopped; once back, the page catches up and says nothing more
    stand.api.app.stop(tid)
    wait_for(lambda: stand.status(tid) == "stopped", 30, "the viewer to stop")
    relay.mend()
    expect(_badge(page)).to_have_text("stopped")
    expect(note).to_have_count(0)
    expect(log).to_contain_text("complete")
    # a stopped serving app has no page to link to
    expect(app_page).to_have_count(0)
    assert not_reloaded(page), "the page was reloaded"


# -- stopping a long-lived app ---------------------------------------------------------------------


def test_stop_a_long_lived_app_from_its_page(stand: Stand, page: Page) -> None:
    stand.sign_in(page, "dev")
    page.goto(f"{stand.url}/#/apps/{stand.viewer_app_id}")
    page.get_by_role("link", name="Run", exact=True).click()
    expect(page.get_by_role("heading", name="Run Project viewer", level=1)).to_be_visible()
    # its target: one of the team's real projects
    project = page.get_by_role("combobox", name="Project", exact=True)
    expect(project.get_by_role("option", name=stand.project_name)).to_be_attached()
    project.select_option(label=stand.project_name)
    page.get_by_role("combobox", name="Agent", exact=True).select_option(value=str(stand.agent_id))
    page.get_by_role("button", name="Start", exact=True).click()
    tid = _session_id(page)
    mark(page)
    expect(_badge(page)).to_have_text("started")
    expect(_ready(page)).to_have_text("ready")
    task = stand.api.task.get_info_by_id(tid)
    assert task["params"]["state"]["projectId"] == stand.project_id
    app_page = page.get_by_role("link", name="Open the app page")
    expect(app_page).to_be_visible()
    pids = wait_for(
        lambda: processes_of(tid, stand.url), 30, "the viewer's processes to show in /proc"
    )

    # Stop asks first; Cancel leaves it running
    stop = page.get_by_role("button", name="Stop", exact=True)
    stop.click()
    dialog = page.get_by_role("dialog", name=f"Stop session #{tid}?")
    expect(dialog).to_be_visible()
    shot(page, "08-stop-dialog", full_page=False)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert stand.status(tid) == "started"

    stop.click()
    dialog.get_by_role("button", name="Stop", exact=True).click()
    expect(_badge(page)).to_have_text("stopped")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_have_count(0)
    expect(page.get_by_role("list", name="Timeline")).to_contain_text("terminating")
    expect(app_page).to_have_count(0)  # the app serves no page any more
    assert stand.status(tid) == "stopped"
    wait_for(
        lambda: not any(alive(pid) for pid in pids) and not processes_of(tid, stand.url),
        30,
        f"the viewer's processes {pids} to be gone",
    )
    assert not_reloaded(page), "the page was reloaded"


# -- a viewer ----------------------------------------------------------------------------------


def test_a_viewer_sees_pages_without_run_or_stop(stand: Stand, pages: Callable[[], Page]) -> None:
    # a long-lived session started by a developer: a developer's page offers Stop
    tid = stand.start(stand.worker_id, ready=True, sleep_s=600)
    dev = pages()
    stand.sign_in(dev, "dev")
    dev.goto(f"{stand.url}/#/sessions/{tid}")
    expect(_badge(dev)).to_have_text("started")
    expect(_ready(dev)).to_have_text("ready")
    expect(dev.get_by_role("button", name="Stop", exact=True)).to_be_visible()

    page = pages()
    stand.sign_in(page, "viewer")
    expect(page.get_by_role("banner")).to_contain_text("viewer")
    page.get_by_role("list", name="Apps").get_by_role("link", name="Hello", exact=True).click()
    main = page.get_by_role("main")
    expect(main.get_by_role("region", name="Readme")).to_contain_text("A first app to run")
    expect(main.get_by_role("region", name="Options")).to_contain_text("count")
    expect(main.get_by_role("link", name="Run", exact=True)).to_have_count(0)
    shot(page, "09-viewer-module")

    # the run dialog's address does not offer a Start either
    page.goto(f"{stand.url}/#/apps/{stand.hello_id}/run")
    expect(main).to_contain_text("cannot run apps")
    expect(page.get_by_role("button", name="Start")).to_have_count(0)

    page.goto(f"{stand.url}/#/sessions/{tid}")
    expect(_badge(page)).to_have_text("started")
    expect(_ready(page)).to_have_text("ready")
    expect(_log(page)).to_contain_text("ready")
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    shot(page, "09-viewer-session")

    # no adding agents either
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    expect(page.get_by_role("table", name="Agents")).to_contain_text(stand.agent_name)
    expect(page.get_by_role("heading", name="Add an agent")).to_have_count(0)

    # and the API refuses anyway
    viewer = stand.client("viewer")
    refused = viewer.post(
        "/tasks",
        json={
            "workspace_id": stand.workspace_id,
            "module_id": stand.hello_id,
            "params": {"state": {}},
        },
    )
    assert refused.status_code == 403, refused.text
    assert viewer.post(f"/tasks/{tid}/stop").status_code == 403
    assert stand.status(tid) == "started"
    stand.api.app.stop(tid)
    expect(_badge(dev)).to_have_text("stopped")


# -- agents ------------------------------------------------------------------------------------


def test_agents_page_and_adding_an_agent(
    stand: Stand, page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand.sign_in(page, "dev")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    expect(page.get_by_role("heading", name="Agents", level=1)).to_be_visible()
    table = page.get_by_role("table", name="Agents")
    expect(table.get_by_role("columnheader")).to_contain_text(
        ["Name", "Status", "Slots", "Running"]
    )
    ours = table.get_by_role("row").filter(
        has=page.get_by_role("rowheader", name=stand.agent_name, exact=True)
    )
    expect(ours).to_contain_text("online")
    expect(ours.get_by_role("cell").nth(1)).to_have_text("4")  # slots

    page.get_by_role("textbox", name="Name", exact=True).fill("gpu-box-1")
    page.get_by_role("button", name="Add the agent").click()
    added = page.get_by_role("region", name="Agent gpu-box-1 is added")
    expect(added).to_be_visible()
    command = added.get_by_role("code").or_(added.locator("code")).first.inner_text()
    found = re.fullmatch(
        rf"appyard agent run --server {re.escape(stand.url)} --token (\S+) --slots \d+",
        command.strip(),
    )
    assert found, command
    new = table.get_by_role("row").filter(
        has=page.get_by_role("rowheader", name="gpu-box-1", exact=True)
    )
    expect(new).to_contain_text("offline")
    shot(page, "07-agents")

    # a name the team has already is refused, beside the field
    name = page.get_by_role("textbox", name="Name", exact=True)
    name.fill("gpu-box-1")
    page.get_by_role("button", name="Add the agent").click()
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_have_accessible_description(
        re.compile("has an agent named 'gpu-box-1' already; pick another name")
    )
    expect(table.get_by_role("rowheader", name="gpu-box-1", exact=True)).to_have_count(1)

    # the token shown works: an agent started with it comes online, with its machine (two GPUs
    # declared through the test-only inventory file) and labels
    gpus = [
        {"index": i, "uuid": f"GPU-{i}", "name": "NVIDIA A100-SXM4-80GB", "memory_mb": 81920}
        for i in range(2)
    ]
    (tmp_path / "inventory.json").write_text(json.dumps({"gpus": gpus}))
    monkeypatch.setenv("APPYARD_AGENT_INVENTORY_FILE", str(tmp_path / "inventory.json"))
    agent = stand.world.start_agent(
        found.group(1), name="gpu-box-1", extra_args=["--label", "gpu=a100"]
    )
    try:
        created = next(a for a in stand.api.agent.get_list(stand.team_id) if a.name == "gpu-box-1")
        wait_for(lambda: stand.agent_online(created.id), 30, "the added agent to come online")
        # live: no reload, no Refresh
        expect(new).to_contain_text("online")
        expect(table.get_by_role("columnheader")).to_contain_text(["CPUs", "Memory", "GPUs"])
        listed = new.get_by_role("list", name="2 GPUs").get_by_role("listitem")
        a100 = "NVIDIA A100-SXM4-80GB (80 GB)"
        expect(listed).to_have_text([f"0: {a100} free", f"1: {a100} free"])
        expect(new).to_contain_text("gpu=a100")
        # a session that takes a GPU shows on it, live, and frees it when it stops
        gpu_app = Path(__file__).parent.parent / "e2e" / "apps" / "gpu"
        module_id = stand.api.module.publish(gpu_app).module_id
        tid = stand.start(module_id, agent_id=created.id)
        expect(listed).to_have_text([f"0: {a100} held by #{tid}", f"1: {a100} free"])
        shot(page, "07-agents-gpus")
        stand.api.app.stop(tid)
        expect(listed).to_have_text([f"0: {a100} free", f"1: {a100} free"])
    finally:
        agent.stop()


# -- a long log --------------------------------------------------------------------------------


def test_a_session_with_100000_log_lines(stand: Stand, page: Page) -> None:
    tid = stand.start(stand.lines_id, lines=100_000)
    wait_for(lambda: stand.status(tid) in ("finished", "error"), 120, "the many-lines app to end")
    assert stand.status(tid) == "finished"
    stand.sign_in(page, "dev")
    page.goto(f"{stand.url}/#/sessions/{tid}")
    log = _log(page)
    expect(log).to_contain_text("100,000 lines", timeout=60_000)
    expect(log).to_contain_text("complete")
    lines = log.get_by_role("region")  # the scrolling box of the lines
    lines.scroll_into_view_if_needed()
    # it follows the end: the last line is in view (each line starts with its time)
    first = lines.get_by_text(re.compile(r"line 1 of 100000$"))
    last = lines.get_by_text(re.compile(r"last line: 100000 of 100000$"))
    expect(last).to_be_in_viewport()
    # the page holds a window of the lines, not all of them
    nodes = page.evaluate("() => document.querySelectorAll('main *').length")
    assert nodes < 2000, f"{nodes} elements in the page"
    shot(page, "06-session-long-log", full_page=False)

    # to the top with the keyboard, and back to the end
    lines.focus()
    page.keyboard.press("Home")
    expect(first).to_be_in_viewport()
    expect(last).to_have_count(0)
    page.keyboard.press("End")
    expect(last).to_be_in_viewport()
    expect(first).to_have_count(0)


def test_a_team_file_output_downloads_from_the_session_page(stand: Stand, page: Page) -> None:
    module_id = stand.api.module.publish(APPS / "file-output").module_id
    tid = stand.start(module_id, path="/results/from-the-browser.txt", text="made by the app")
    stand.sign_in(page, "dev")
    page.goto(f"{stand.url}/#/sessions/{tid}")
    expect(_badge(page)).to_have_text("finished")
    button = page.get_by_role("button", name="Download from-the-browser.txt")
    with page.expect_download() as caught:
        button.click()
    download = caught.value
    assert download.suggested_filename == "from-the-browser.txt"
    assert Path(download.path()).read_text() == "made by the app"


def _tab_to(page: Page, text: str, limit: int = 60) -> None:
    """Press Tab until the focused element's text is ``text`` (fails after ``limit`` presses)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => (document.activeElement?.innerText || document.activeElement?.value || '').trim()"
        )
        if focused == text:
            return
    raise AssertionError(f"{text!r} was not reached with Tab in {limit} presses")


def test_the_keyboard_alone_signs_in_and_runs_an_app(stand: Stand, page: Page) -> None:
    page.goto(f"{stand.url}/#/login")
    # the page puts the focus in the login field once it is drawn
    expect(page.get_by_role("textbox", name="Login", exact=True)).to_be_focused()
    page.keyboard.type("dev")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(_hash("/ecosystem"))
    expect(page.get_by_role("link", name="Hello", exact=True)).to_be_visible()
    _tab_to(page, "Hello")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Hello", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Run", exact=True)).to_be_visible()
    _tab_to(page, "Run")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Run Hello", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    _tab_to(page, "Start")
    page.keyboard.press("Enter")
    tid = _session_id(page)
    expect(_badge(page)).to_have_text(re.compile("queued|consumed|started|finished"))
    assert stand.api.task.get_info_by_id(tid)["params"]["state"]["name"] == "world"


def test_a_session_that_waits_for_a_gpu_says_why_on_its_page(stand: Stand, page: Page) -> None:
    """The stand's agent has no GPU: a session of an app that needs one, queued anyway, shows
    what it needs and why it waits; live, so its page needs no reload."""
    gpu_app = Path(__file__).parent.parent / "e2e" / "apps" / "gpu"
    module_id = stand.api.module.publish(gpu_app).module_id
    started = stand.sdk("dev").app.start(
        module_id=module_id,
        workspace_id=stand.workspace_id,
        resources={"gpus": 2},
        queue_anyway=True,
        task_name="needs-two-gpus",
    )
    stand.sign_in(page, "dev")
    page.goto(f"{stand.url}/#/sessions/{started.task_id}")
    expect(_badge(page)).to_have_text("queued")
    reason = page.locator(".wait-reason")
    # the stand's other agents (of earlier tests) are offline: each is named after it
    expect(reason).to_contain_text(
        f"no online agent has 2 GPUs free (agent {stand.agent_id} ({stand.agent_name}) "
        "has 0 GPUs, not 2"
    )
    expect(page.get_by_text("2 GPUs", exact=True)).to_be_visible()
    shot(page, "session-waits-for-gpus")
    stand.api.app.stop(started.task_id)

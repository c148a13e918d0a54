"""The pipeline pages of the web UI in real headless Chromium, on a real server with real agents
running the pipeline test app (``tests/pipelines/apps/step``).

The pipelines page lists saved pipelines and runs (filters, pages, a new run joining live); a
saved pipeline starts from the form of its inputs; a run's graph changes live to finished; a
failing step shows its error and Resume runs it again; Stop ends a run with a long step; a 422
shows beside its input. Steps run on agents of this module's own (apps unsandboxed, so that a
step can leave a marker file for its next attempt). Nothing sleeps: Playwright's ``expect``
waits for what should show, and :func:`wait_for` for conditions outside the page.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.sync_api import Locator, Page, expect
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)

from tests.support import Client, wait_for
from tests.web.conftest import PASSWORD, Relay, Stand, mark, not_reloaded, shot

STEP_APP = Path(__file__).resolve().parents[1] / "pipelines" / "apps" / "step"
SLUG = "tests/pipeline-step"


@dataclass
class Pipes:
    stand: Stand
    agent_id: int  # an online agent that runs apps unsandboxed

    @property
    def dev(self) -> Client:
        return self.stand.client("dev")

    def save(self, name: str, steps: list[dict[str, Any]], **doc: Any) -> dict[str, Any]:
        """Save a pipeline (as dev) whose steps run the test app; its PipelineInfo."""
        body = {"document": {"name": name, "steps": steps, **doc}}
        info: dict[str, Any] = self.dev.ok(
            "POST", f"/teams/{self.stand.team_id}/pipelines", json=body
        )
        return info

    def run(self, pipeline_id: int, **inputs: Any) -> dict[str, Any]:
        body = {
            "workspace_id": self.stand.workspace_id,
            "pipeline_id": pipeline_id,
            "inputs": inputs,
        }
        run: dict[str, Any] = self.dev.ok("POST", "/pipeline-runs", json=body)
        return run

    def get(self, run_id: int) -> dict[str, Any]:
        run: dict[str, Any] = self.dev.ok("GET", f"/pipeline-runs/{run_id}")
        return run

    def wait(self, run_id: int, timeout: float = 60) -> dict[str, Any]:
        """The run once it ended."""

        def ended() -> Any:
            r = self.dev.ok("GET", f"/pipeline-runs/{run_id}/wait", params={"timeout": 5})
            return None if r["timed_out"] else r["run"]

        run: dict[str, Any] = wait_for(ended, timeout, f"run {run_id} to end")
        return run

    def step(self, step_id: str, agent: int | None = None, **state: Any) -> dict[str, Any]:
        """A step of the test app on ``agent`` (this module's agent when None)."""
        out: dict[str, Any] = {"id": step_id, "app": SLUG, "agent": agent or self.agent_id}
        needs = state.pop("needs", None)
        if needs:
            out["needs"] = needs
        for key in ("for_each", "retries", "max_parallel"):
            if key in state:
                out[key] = state.pop(key)
        if state:
            out["params"] = state
        return out


def _online(stand: Stand, agent_id: int) -> bool:
    return stand.agent_online(agent_id)


@pytest.fixture(scope="module")
def pipes(stand: Stand) -> Pipes:
    stand.world.admin.publish(STEP_APP)
    agent_id, token = stand.world.new_agent_token("pipe-agent")
    proc = stand.world.start_agent(token, name="pipe-agent", slots=4, extra_args=["--no-sandbox"])
    wait_for(lambda: _online(stand, agent_id), 30, f"pipe-agent online:\n{proc.log_text}")
    return Pipes(stand, agent_id)


def _to_pipelines(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Pipelines").click()
    expect(page.get_by_role("heading", name="Pipelines", level=1)).to_be_visible()


def _run_id(page: Page) -> int:
    expect(page).to_have_url(re.compile(r"#/pipeline-runs/\d+(\?.*)?$"))
    found = re.search(r"#/pipeline-runs/(\d+)", page.url)
    assert found, page.url
    return int(found.group(1))


def _box(page: Page, step: str) -> Locator:
    """The box of ``step`` in the run's graph (its ``data-state`` is the step's state)."""
    return page.locator(f'svg.run-graph g.step[data-step="{step}"]')


def _status(page: Page) -> Locator:
    return page.get_by_role("status", name="Status")


def _rows(page: Page, table: str) -> Locator:
    return page.get_by_role("table", name=table).locator("tbody tr")


# -- the list --------------------------------------------------------------------------------


def test_the_pipelines_page_lists_saved_pipelines_and_runs(pipes: Pipes, page: Page) -> None:
    stand = pipes.stand
    many = pipes.save("many", [pipes.step("only")])
    two = pipes.save(
        "two-steps",
        [pipes.step("first"), pipes.step("second", needs=["first"], exit_code=4)],
        description="Second step fails on purpose.",
    )
    runs = [pipes.run(many["id"]) for _ in range(26)]
    failed = pipes.run(two["id"])
    for r in [*runs, failed]:
        pipes.wait(r["id"])

    stand.sign_in(page, "dev")
    mark(page)
    _to_pipelines(page)
    saved = _rows(page, "Saved pipelines")
    expect(saved).to_have_count(2)
    row = saved.filter(has_text="two-steps")
    expect(row.get_by_role("cell").nth(0)).to_have_text(two["version"])
    expect(row.get_by_role("cell").nth(1)).to_have_text("2")
    expect(row).to_contain_text("Second step fails on purpose.")
    expect(row.get_by_role("link", name="Start two-steps")).to_be_visible()

    table = _rows(page, "Runs")
    expect(table).to_have_count(25)  # one page
    expect(table.first).to_contain_text(f"#{failed['id']}")
    expect(table.first.locator("[data-status]")).to_have_text("error")
    expect(table.first).to_contain_text("1 of 2 finished · 1 error")
    shot(page, "20-pipelines")

    # filters: by status, by pipeline; kept in the address
    page.get_by_role("combobox", name="Status", exact=True).select_option(label="error")
    expect(table).to_have_count(1)
    expect(page).to_have_url(re.compile(r"#/pipelines\?status=error$"))
    page.get_by_role("combobox", name="Status", exact=True).select_option(label="All statuses")
    page.get_by_role("combobox", name="Pipeline", exact=True).select_option("many")
    expect(page).to_have_url(re.compile(r"#/pipelines\?pipeline=many$"))
    expect(table).to_have_count(25)
    expect(table.filter(has_text="two-steps")).to_have_count(0)
    # pages, by the API's cursor
    page.get_by_role("button", name="Next").click()
    expect(table).to_have_count(1)
    expect(table.first).to_contain_text(f"#{runs[0]['id']}")
    expect(page.get_by_role("navigation", name="Pages")).to_contain_text("Page 2")
    page.get_by_role("button", name="Previous").click()
    expect(table).to_have_count(25)
    expect(table.first).to_contain_text(f"#{runs[-1]['id']}")

    # a run started elsewhere joins the top live, and changes in place until it ends
    late_id, late_token = stand.world.new_agent_token("list-late")
    later = pipes.save("many", [pipes.step("only", agent=late_id)])
    fresh = pipes.run(later["id"])
    top = table.first
    expect(top).to_contain_text(f"#{fresh['id']}")
    expect(top.locator("[data-status]")).to_have_text("running")
    stand.world.start_agent(late_token, name="list-late", slots=1, extra_args=["--no-sandbox"])
    expect(top.locator("[data-status]")).to_have_text("finished")
    expect(top).to_contain_text("1 of 1 finished")
    assert pipes.get(fresh["id"])["status"] == "finished"
    assert not_reloaded(page), "the page was reloaded"

    # a click on a row opens the run
    top.get_by_role("cell").nth(2).click()
    assert _run_id(page) == fresh["id"]


def test_a_runs_list_that_cannot_load_shows_no_stale_rows(
    pipes: Pipes, relay: Relay, page: Page
) -> None:
    """A filter changed while the server cannot be reached: the runs of the filter before are
    not left standing under it; "Try again" loads it once the server answers."""
    stale = pipes.save("stale", [pipes.step("only")])
    run = pipes.run(stale["id"])
    pipes.wait(run["id"])
    page.goto(f"{relay.url}/#/pipelines")  # the test cuts the network at the relay
    page.get_by_role("textbox", name="Login", exact=True).fill("dev")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    table = _rows(page, "Runs")
    expect(table.first).to_contain_text(f"#{run['id']}")
    mark(page)

    relay.cut()
    page.get_by_role("combobox", name="Pipeline", exact=True).select_option("stale")
    error = page.get_by_role("alert").filter(has_text="cannot be reached")
    expect(error).to_be_visible()
    expect(table).to_have_count(0)

    relay.mend()
    page.get_by_role("button", name="Try again", exact=True).click()
    expect(table).to_have_count(1)
    expect(table.first).to_contain_text(f"#{run['id']}")
    expect(error).to_have_count(0)
    assert not_reloaded(page), "the page was reloaded"


# -- start, watch, open a session --------------------------------------------------------------


def test_start_from_the_form_and_watch_the_graph_finish(pipes: Pipes, page: Page) -> None:
    stand = pipes.stand
    # the steps run on an agent that is not running yet: the page sees the first step wait,
    # then every step finish once the agent starts, whatever the timing
    late_id, late_token = stand.world.new_agent_token("graph-late")
    on = {"agent": late_id}
    pipes.save(
        "graph",
        [
            pipes.step("prepare", echo="${inputs.label}", outputs={"sizes": [1, 2, 3]}, **on),
            pipes.step("left", needs=["prepare"], sleep_s="${inputs.pause}", **on),
            pipes.step(
                "each",
                needs=["prepare"],
                for_each="${steps.prepare.outputs.sizes}",
                echo="${item}",
                **on,
            ),
            pipes.step("report", needs=["left", "each"], **on),
        ],
        inputs={
            "label": {"default": "cats", "description": "What to echo."},
            "pause": {"default": 0.2},
        },
    )

    stand.sign_in(page, "dev")
    _to_pipelines(page)
    page.get_by_role("link", name="Start graph").click()
    expect(page.get_by_role("heading", name="Start graph", level=1)).to_be_visible()
    label = page.get_by_role("textbox", name="label")
    pause = page.get_by_role("textbox", name="pause")
    expect(label).to_have_value("cats")
    expect(pause).to_have_value("0.2")
    label.fill("dogs")
    pause.fill("0.3")
    shot(page, "21-pipeline-start")
    page.get_by_role("button", name="Start", exact=True).click()
    run_id = _run_id(page)
    mark(page)
    assert pipes.get(run_id)["inputs"] == {"label": "dogs", "pause": 0.3}

    expect(page.get_by_role("heading", name=f"Run #{run_id} · graph", level=1)).to_be_visible()
    expect(_status(page)).to_have_text("running")
    expect(_box(page, "prepare")).to_have_attribute("data-state", "running")
    for waiting in ("left", "each", "report"):
        expect(_box(page, waiting)).to_have_attribute("data-state", "pending")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    shot(page, "22-pipeline-run-waiting")

    stand.world.start_agent(late_token, name="graph-late", slots=4, extra_args=["--no-sandbox"])
    expect(_box(page, "prepare")).to_have_attribute("data-state", "finished")
    expect(_box(page, "report")).to_have_attribute("data-state", "finished")
    expect(_status(page)).to_have_text("finished")
    for step in ("left", "each"):
        expect(_box(page, step)).to_have_attribute("data-state", "finished")
    # the for_each step is a group with its items' counts
    expect(_box(page, "each")).to_contain_text("3/3 finished")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_hidden()
    expect(page.get_by_role("button", name="Resume", exact=True)).to_be_hidden()
    run = pipes.get(run_id)
    assert run["status"] == "finished"
    shot(page, "22-pipeline-run")

    # a step selected: its attempts with their sessions
    _box(page, "each").click()
    attempts = page.get_by_role("table", name="Attempts of step each")
    expect(attempts.locator("tbody tr")).to_have_count(3)
    each_tasks = {a["task_id"] for s in run["steps"] if s["id"] == "each" for a in s["attempts"]}
    for tid in each_tasks:
        expect(attempts.get_by_role("link", name=f"#{tid}", exact=True)).to_be_visible()
    expect(page).to_have_url(re.compile(r"\?step=each$"))

    # the session pill of a step opens its session, which links back to the run
    prepare = next(s for s in run["steps"] if s["id"] == "prepare")
    tid = prepare["attempts"][-1]["task_id"]
    page.get_by_role("link", name=f"Session #{tid} of step prepare").click()
    expect(page).to_have_url(re.compile(rf"#/sessions/{tid}$"))
    back = page.get_by_role("link", name=f"Pipeline run {run_id}, step prepare")
    expect(back).to_be_visible()
    shot(page, "22-pipeline-session")
    back.click()
    assert _run_id(page) == run_id
    expect(page.get_by_role("heading", name="Step prepare", level=2)).to_be_visible()
    assert not_reloaded(page), "the page was reloaded"


# -- failure and resume, stop ------------------------------------------------------------------


def test_a_failing_step_shows_its_error_and_resume_runs_it_again(
    pipes: Pipes, page: Page, tmp_path: Path
) -> None:
    marker = tmp_path / "failed-once"
    pipe = pipes.save(
        "flaky",
        [
            pipes.step("fetch"),
            pipes.step("convert", needs=["fetch"], fail_first=str(marker)),
            pipes.step("publish", needs=["convert"]),
        ],
    )
    run = pipes.run(pipe["id"])
    ended = pipes.wait(run["id"])
    assert ended["status"] == "error"

    pipes.stand.sign_in(page, "dev")
    page.goto(f"{pipes.stand.url}/#/pipeline-runs/{run['id']}")
    mark(page)
    expect(_status(page)).to_have_text("error")
    expect(_box(page, "fetch")).to_have_attribute("data-state", "finished")
    expect(_box(page, "convert")).to_have_attribute("data-state", "error")
    expect(_box(page, "publish")).to_have_attribute("data-state", "skipped")
    expect(_box(page, "publish")).to_contain_text("skipped: upstream failed")
    # the failed step is the one shown: its attempt and error
    expect(page.get_by_role("heading", name="Step convert", level=2)).to_be_visible()
    attempts = page.get_by_role("table", name="Attempts of step convert")
    expect(attempts.locator("tbody tr")).to_have_count(1)
    expect(attempts.locator("[data-status]")).to_have_text("error")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_hidden()
    resume = page.get_by_role("button", name="Resume", exact=True)
    expect(resume).to_be_visible()
    shot(page, "23-pipeline-run-error")

    # asked first: Cancel leaves the run as it is
    resume.click()
    dialog = page.get_by_role("dialog", name=f"Resume run #{run['id']}?")
    expect(dialog).to_be_visible()
    shot(page, "23-pipeline-resume-dialog", full_page=False)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert pipes.get(run["id"])["status"] == "error"

    resume.click()
    dialog.get_by_role("button", name="Resume run").click()
    expect(_status(page)).to_have_text("finished")
    expect(_box(page, "convert")).to_have_attribute("data-state", "finished")
    expect(_box(page, "publish")).to_have_attribute("data-state", "finished")
    expect(attempts.locator("tbody tr")).to_have_count(2)
    expect(attempts.locator("tbody tr").first.locator("[data-status]")).to_have_text("finished")
    expect(resume).to_be_hidden()
    after = pipes.get(run["id"])
    steps = {s["id"]: s for s in after["steps"]}
    # the finished step did not run again
    assert [a["task_id"] for a in steps["fetch"]["attempts"]] == [
        a["task_id"] for s in ended["steps"] if s["id"] == "fetch" for a in s["attempts"]
    ]
    assert [a["status"] for a in steps["convert"]["attempts"]] == ["error", "finished"]
    assert not_reloaded(page), "the page was reloaded"
    shot(page, "23-pipeline-run-resumed")


def test_stop_a_run_with_a_long_step(pipes: Pipes, page: Page) -> None:
    pipe = pipes.save(
        "long", [pipes.step("slow", sleep_s=600), pipes.step("after", needs=["slow"])]
    )
    run = pipes.run(pipe["id"])
    slow_task = wait_for(
        lambda: next(
            (
                a["task_id"]
                for s in pipes.get(run["id"])["steps"]
                if s["id"] == "slow"
                for a in s["attempts"]
                if a["task_id"]
            ),
            None,
        ),
        30,
        "the slow step's session",
    )
    wait_for(lambda: pipes.stand.status(slow_task) == "started", 30, "the slow step to start")

    pipes.stand.sign_in(page, "dev")
    page.goto(f"{pipes.stand.url}/#/pipeline-runs/{run['id']}")
    mark(page)
    expect(_box(page, "slow")).to_have_attribute("data-state", "running")
    stop = page.get_by_role("button", name="Stop", exact=True)
    stop.click()
    dialog = page.get_by_role("dialog", name=f"Stop run #{run['id']}?")
    expect(dialog).to_be_visible()
    shot(page, "24-pipeline-stop-dialog", full_page=False)
    dialog.get_by_role("button", name="Stop run").click()
    expect(_status(page)).to_have_text("stopped")
    expect(_box(page, "slow")).to_have_attribute("data-state", "stopped")
    expect(_box(page, "after")).to_have_attribute("data-state", "skipped")
    expect(_box(page, "after")).to_contain_text("skipped: run stopped")
    _box(page, "after").click()
    expect(page.get_by_role("heading", name="Step after", level=2)).to_be_visible()
    expect(page.locator(".step-panel")).to_contain_text("Skipped: the run was stopped.")
    expect(stop).to_be_hidden()
    expect(page.get_by_role("button", name="Resume", exact=True)).to_be_visible()
    assert pipes.stand.status(slow_task) == "stopped"
    assert pipes.get(run["id"])["status"] == "stopped"
    assert not_reloaded(page), "the page was reloaded"
    shot(page, "24-pipeline-run-stopped")


# -- a refusal beside its input ----------------------------------------------------------------


def test_the_servers_problems_show_beside_their_inputs(pipes: Pipes, page: Page) -> None:
    pipes.save(
        "typed",
        [pipes.step("count", exit_code="${inputs.code}", echo="${inputs.note}")],
        inputs={"code": {"default": 0}, "note": {"description": "What to echo."}},
    )
    pipes.stand.sign_in(page, "dev")
    _to_pipelines(page)
    page.get_by_role("link", name="Start typed").click()
    code = page.get_by_role("textbox", name="code")
    note = page.get_by_role("textbox", name="note")
    expect(code).to_have_value("0")
    expect(note).to_have_value("")

    # what is not JSON where JSON is needed is said before anything is sent
    code.fill("three")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(code).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[data-input="code"] .field-error')).to_contain_text("Not a JSON value")
    expect(code).to_be_focused()

    # the server's problems: a required input not given; a text where the app takes a number
    code.fill('"three"')
    page.get_by_role("button", name="Start", exact=True).click()
    note_error = page.locator('[data-input="note"] .field-error')
    expect(note_error).to_have_text("has no default; the run must give it")
    expect(note).to_have_attribute("aria-invalid", "true")
    code_error = page.locator('[data-input="code"] .field-error')
    expect(code_error).to_contain_text("steps[0].params.exit_code")
    expect(page).to_have_url(re.compile(r"#/pipelines/\d+/run$"))
    shot(page, "21-pipeline-start-error")

    code.fill("0")
    note.fill("hello there")  # not JSON: sent as text
    page.get_by_role("button", name="Start", exact=True).click()
    run_id = _run_id(page)
    assert pipes.get(run_id)["inputs"] == {"code": 0, "note": "hello there"}
    expect(_status(page)).to_have_text("finished")


# -- a viewer ----------------------------------------------------------------------------------


def test_a_viewer_sees_pipelines_and_runs_without_start_stop_or_resume(
    pipes: Pipes, page: Page, tmp_path: Path
) -> None:
    marker = tmp_path / "failed-once"
    pipe = pipes.save("for-viewers", [pipes.step("only", fail_first=str(marker), sleep_s=1)])
    run = pipes.wait(pipes.run(pipe["id"])["id"])
    assert run["status"] == "error"

    pipes.stand.sign_in(page, "viewer")
    _to_pipelines(page)
    saved = _rows(page, "Saved pipelines").filter(has_text="for-viewers")
    expect(saved).to_have_count(1)
    expect(page.get_by_role("link", name=re.compile(r"^Start "))).to_have_count(0)
    _rows(page, "Runs").filter(has_text=f"#{run['id']}").get_by_role("link").click()
    assert _run_id(page) == run["id"]
    expect(_status(page)).to_have_text("error")
    expect(_box(page, "only")).to_have_attribute("data-state", "error")
    expect(page.get_by_role("button", name="Resume", exact=True)).to_be_hidden()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_hidden()
    mark(page)

    # an ended run's page still hears of a resume made elsewhere, and follows it to its end
    pipes.dev.ok("POST", f"/pipeline-runs/{run['id']}/resume")
    expect(_status(page)).to_have_text("finished")
    expect(_box(page, "only")).to_have_attribute("data-state", "finished")
    attempts = page.get_by_role("table", name="Attempts of step only")
    expect(attempts.locator("tbody tr")).to_have_count(2)
    assert not_reloaded(page), "the page was reloaded"

    # the start form says why a viewer cannot start
    page.goto(f"{pipes.stand.url}/#/pipelines/{pipe['id']}/run")
    expect(page.get_by_role("main")).to_contain_text("so you cannot start pipelines")
    expect(page.get_by_role("button", name="Start", exact=True)).to_have_count(0)

"""The reference's TaskApi, AppApi, TeamApi, WorkspaceApi, UserApi and AgentApi, method by method
(``reference_methods.json``: every public method of the reference's classes with those they
inherit, each marked works / differs / refused), against ``appyard.compat``'s classes, and the
table of docs/compat.md made from the same file.

Rewrite the table after editing the data file: ``python -m tests.compat.test_reference_table``.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import pytest

import appyard.compat as sly
from appyard.compat.api.agent_api import AgentApi
from appyard.compat.api.app_api import AppApi
from appyard.compat.api.task_api import TaskApi
from appyard.compat.api.team_api import TeamApi
from appyard.compat.api.user_api import UserApi
from appyard.compat.api.workspace_api import WorkspaceApi

DATA = Path(__file__).parent / "reference_methods.json"
DOC = Path(__file__).resolve().parents[2] / "docs" / "compat.md"
BEGIN = "<!-- reference methods: made from tests/compat/reference_methods.json -->"
END = "<!-- end of reference methods -->"
OURS: dict[str, type] = {
    "TaskApi": TaskApi,
    "AppApi": AppApi,
    "TeamApi": TeamApi,
    "WorkspaceApi": WorkspaceApi,
    "UserApi": UserApi,
    "AgentApi": AgentApi,
}
ATTR = {
    "TaskApi": "task",
    "AppApi": "app",
    "TeamApi": "team",
    "WorkspaceApi": "workspace",
    "UserApi": "user",
    "AgentApi": "agent",
}
WORDS = {"works": "works", "differs": "works differently", "refused": "refused"}


def _data() -> dict[str, Any]:
    return dict(json.loads(DATA.read_text()))


def _rows() -> list[tuple[str, str, str, str]]:
    return [
        (cls, method, entry["verdict"], entry["note"])
        for cls, methods in _data()["classes"].items()
        for method, entry in methods.items()
    ]


def table() -> str:
    data = _data()
    lines = [
        BEGIN,
        f"Reference: {data['reference']}.",
        "",
        "| class | method | verdict | how / what to do |",
        "| --- | --- | --- | --- |",
    ]
    for cls, method, verdict, note in _rows():
        lines.append(f"| `{cls}` | `{method}` | {WORDS[verdict]} | {note} |")
    counts = {v: sum(1 for r in _rows() if r[2] == v) for v in WORDS}
    lines += [
        "",
        f"{len(_rows())} methods: {counts['works']} work, {counts['differs']} work differently, "
        f"{counts['refused']} are refused with `NotSupportedError`.",
        END,
    ]
    return "\n".join(lines)


def _is_refusal(fn: Any) -> bool:
    return str(getattr(fn, "__doc__", None) or "").startswith("Refused:")


@pytest.fixture(scope="module")
def api() -> sly.Api:
    # nothing here reaches a server: refusals are raised before any request
    return sly.Api("http://127.0.0.1:9", "not-a-token")


def test_every_reference_method_is_implemented_or_refused(api: sly.Api) -> None:
    problems = []
    for cls, method, verdict, note in _rows():
        ours = getattr(OURS[cls], method, None)
        if ours is None:
            problems.append(f"{cls}.{method}: missing (implement it, or refuse it)")
            continue
        if verdict in ("works", "differs") and _is_refusal(ours):
            problems.append(f"{cls}.{method}: listed as {verdict} but is a refusal")
        if verdict == "differs" and not note:
            problems.append(f"{cls}.{method}: works differently, but the note does not say how")
        if verdict == "refused":
            bound = getattr(getattr(api, ATTR[cls]), method)
            required = [
                p
                for p in inspect.signature(bound).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            try:
                bound(*[None] * len(required))
            except sly.NotSupportedError as e:
                if "not supported" not in str(e):
                    problems.append(f"{cls}.{method}: the refusal does not say what: {e}")
            except Exception as e:
                problems.append(f"{cls}.{method}: refused, but raised {type(e).__name__}: {e}")
            else:
                problems.append(f"{cls}.{method}: listed as refused but returned")
    assert problems == []


def test_the_data_file_names_each_method_once_with_a_known_verdict() -> None:
    for cls, methods in _data()["classes"].items():
        assert cls in OURS
        for method, entry in methods.items():
            assert entry["verdict"] in WORDS, (cls, method)
            if entry["verdict"] == "refused":
                assert entry["note"], f"{cls}.{method}: a refusal says what to do instead"


def test_the_docs_table_is_made_from_the_data_file() -> None:
    text = DOC.read_text()
    assert BEGIN in text and END in text, f"docs/compat.md lacks the {BEGIN} section"
    current = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert current == table(), "stale: run python -m tests.compat.test_reference_table"


def _write() -> None:
    text = DOC.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    DOC.write_text(text[:start] + table() + text[end:])


if __name__ == "__main__":
    _write()
    sys.stdout.write(f"wrote the table of {DOC}\n")

"""``modal_template_options``: titles, help and choices of an app's options, checked at publish
(422 naming ``config.modal_template_options.<key>...``) and at start (422 on
``params.state.<key>`` listing the choices)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import appyard as ay
from tests.support import World, config_tar

HELLO = Path(ay.__file__).parent / "ecosystem" / "hello"
STATE = {"mode": "fast", "level": 2, "ratio": 0.5, "flag": False, "tags": [], "anything": None}


def _config(options: Any, slug: str = "t/options") -> dict[str, Any]:
    return {
        "name": "Options",
        "slug": slug,
        "main_script": "main.py",
        "modal_template_state": STATE,
        "modal_template_options": options,
    }


def _publish(world: World, config: dict[str, Any]) -> Any:
    return world.admin.http.post("/modules", files={"archive": ("a.tar.gz", config_tar(config))})


def _error(r: Any) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    error: dict[str, Any] = r.json()["error"]
    return error


def test_publish_refuses_bad_options_naming_the_field(world: World) -> None:
    before = world.admin.ok("GET", "/modules")
    opts = "config.modal_template_options"
    cases: list[tuple[Any, str, str]] = [
        (["mode"], opts, "JSON object"),
        ({"nope": {"title": "x"}}, f"{opts}.nope", "no key 'nope'"),
        ({"mode": "fast"}, f"{opts}.mode", "JSON object"),
        ({"mode": {"choice": ["fast"]}}, f"{opts}.mode.choice", "not known"),
        ({"mode": {"title": 3}}, f"{opts}.mode.title", "string"),
        ({"mode": {"help": ["x"]}}, f"{opts}.mode.help", "string"),
        ({"mode": {"choices": []}}, f"{opts}.mode.choices", "non-empty list"),
        ({"mode": {"choices": "fast"}}, f"{opts}.mode.choices", "non-empty list"),
        ({"mode": {"choices": ["slow", "medium"]}}, f"{opts}.mode.choices", "default 'fast'"),
        ({"mode": {"choices": ["fast", 1]}}, f"{opts}.mode.choices", "item 1 is number"),
        ({"mode": {"choices": ["fast", "slow", "fast"]}}, f"{opts}.mode.choices", "twice"),
        ({"mode": {"choices": ["fast", None]}}, f"{opts}.mode.choices", "item 1 is null"),
        ({"mode": {"choices": ["fast", ["slow"]]}}, f"{opts}.mode.choices", "item 1 is array"),
        ({"level": {"choices": [1, 3]}}, f"{opts}.level.choices", "default 2"),
        ({"level": {"choices": [2, True]}}, f"{opts}.level.choices", "item 1 is boolean"),
        ({"level": {"choices": [2, "3"]}}, f"{opts}.level.choices", "item 1 is string"),
        ({"flag": {"choices": [True]}}, f"{opts}.flag.choices", "default False"),
        ({"tags": {"choices": [[]]}}, f"{opts}.tags.choices", "is array"),
        ({"anything": {"choices": [None]}}, f"{opts}.anything.choices", "is null"),
    ]
    for options, field, words in cases:
        e = _error(_publish(world, _config(options)))
        assert e["field"] == field, (options, e)
        assert words in e["message"], (options, e["message"])
    assert world.admin.ok("GET", "/modules") == before  # nothing was written


def test_options_reach_the_manifest_and_choices_bind_a_start(world: World) -> None:
    options = {
        "mode": {"title": "Mode", "help": "How fast.", "choices": ["fast", "slow"]},
        "level": {"choices": [1, 2, 3.5]},
        "flag": {"title": "Flag", "choices": [False, True]},
        "ratio": {"help": "no choices: any number"},
    }
    published = world.admin.ok(
        "POST", "/modules", files={"archive": ("a.tar.gz", config_tar(_config(options, "t/good")))}
    )
    mid = published["module_id"]
    # the UI reads them from the manifest: nothing else is added to the wire
    module = world.admin.ok("GET", f"/modules/{mid}")
    assert module["config"]["modal_template_options"] == options

    def start(**state: Any) -> Any:
        body = {"workspace_id": world.workspace_id, "module_id": mid, "params": state}
        return world.admin.http.post("/tasks", json=body)

    tasks = world.admin.ok("GET", "/tasks", params={"team_id": world.team_id})["items"]
    for state, field, got in [
        ({"mode": "medium"}, "params.state.mode", "'medium'"),
        ({"mode": "FAST"}, "params.state.mode", "'FAST'"),
        ({"level": 4}, "params.state.level", "4"),
        ({"mode": 1}, "params.state.mode", "number"),  # the type check comes first
    ]:
        e = _error(start(**state))
        assert e["field"] == field, (state, e)
        assert got in e["message"], e["message"]
    e = _error(start(mode="medium"))
    assert "['fast', 'slow']" in e["message"] and e["details"]["choices"] == ["fast", "slow"]
    after = world.admin.ok("GET", "/tasks", params={"team_id": world.team_id})["items"]
    assert after == tasks  # a refused start writes nothing

    for state in ({}, {"mode": "slow", "level": 3.5, "flag": True, "ratio": 0.25}, {"level": 1}):
        r = start(**state)
        assert r.status_code == 201, (state, r.text)
        task = world.admin.ok("GET", f"/tasks/{r.json()['task_id']}")
        assert task["params"]["state"] == state


def test_hello_ships_choices_for_its_style(world: World) -> None:
    mid = world.admin.publish(HELLO)["module_id"]
    config = world.admin.ok("GET", f"/modules/{mid}")["config"]
    assert config["modal_template_state"]["style"] == "plain"
    style = config["modal_template_options"]["style"]
    assert style["choices"] == ["plain", "shout", "whisper"] and style["title"]
    assert set(config["modal_template_options"]) == set(config["modal_template_state"])
    body = {"workspace_id": world.workspace_id, "module_id": mid, "params": {"style": "loud"}}
    e = _error(world.admin.http.post("/tasks", json=body))
    assert e["field"] == "params.state.style"
    assert "['plain', 'shout', 'whisper']" in e["message"]

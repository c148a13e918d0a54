"""The app manifest: one model (``appyard.schemas.manifest.Manifest``) for the server, the agent
and the SDK. Its refusals keep the publish messages word for word; keys it does not declare
(those the reference ecosystem's apps carry) are accepted, kept on the wire as written, and
kept in the parsed model; a release with them runs on a real agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import appyard as ay
from appyard.errors import ManifestError
from appyard.schemas.manifest import DEFAULT_GRACE_S, Manifest
from appyard.sdk.module_info import ModuleInfo
from tests.support import APPS, World, tar_of, wait_for

ECOSYSTEM = Path(ay.__file__).parent / "ecosystem"
GOOD = {"name": "X", "slug": "t/x", "main_script": "main.py"}
#: keys apps of the reference ecosystem carry that we do not use: accepted and kept
REFERENCE_KEYS: dict[str, Any] = {
    "type": "app",
    "icon": "https://example.org/icon.png",
    "icon_background": "#FFFFFF",
    "poster": "https://example.org/poster.png",
    "docker_image": "example/base-py:1.0",
    "instance_version": "6.8.0",
    "min_agent_version": "6.7.0",
    "task_location": "workspace_tasks",
    "isolate": True,
    "need_gpu": False,
    "session_tags": ["deployed_nn"],
    "modal_template": "src/modal.html",
    "modal_width": 500,
    "port": 8000,
}
MENU_KEYS = {"context_root": "Download as", "context_category": "Export"}


def _refusal(config: Any) -> tuple[str | None, str]:
    with pytest.raises(ManifestError) as info:
        Manifest.parse(config)
    return info.value.field, str(info.value)


# --- the model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "folder",
    sorted(p.parent for p in [*ECOSYSTEM.glob("*/config.json"), *APPS.glob("*/config.json")]),
)
def test_every_bundled_app_parses(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    manifest = Manifest.parse(config)
    assert (manifest.name, manifest.slug) == (config["name"], config["slug"])
    assert manifest.stop_grace_s == config["stop_grace_s"]
    assert manifest.targets == config["context_menu"]["target"]


def test_defaults_and_typed_readings() -> None:
    m = Manifest.parse(GOOD)
    assert m.stop_grace_s == DEFAULT_GRACE_S and m.headless is False
    assert m.modal_template_state == {} and m.targets == [] and m.categories == []
    assert m.command_words is None and m.requirements is None and m.model_extra == {}
    m = Manifest.parse(
        {
            **GOOD,
            "entrypoint": "python -m src.main --port $APP_PORT --name 'a b'",
            "context_menu": {"target": "images_project"},  # one target as a plain string
            "modal_template_state": {"mode": "fast"},
            "modal_template_options": {"mode": {"title": "Mode", "choices": ["fast", "slow"]}},
        }
    )
    assert m.command_words == ("python", "-m", "src.main", "--port", "$APP_PORT", "--name", "a b")
    assert m.targets == ["images_project"]
    assert m.option_choices("mode") == ["fast", "slow"] and m.option_choices("other") is None


def test_reference_keys_are_accepted_and_kept() -> None:
    config = {
        **GOOD,
        **REFERENCE_KEYS,
        "context_menu": {"target": ["images_project"], **MENU_KEYS},
    }
    m = Manifest.parse(config)
    declared = {"docker_image"}  # a string key we check, and keep as written
    assert m.model_extra == {k: v for k, v in REFERENCE_KEYS.items() if k not in declared}
    assert m.docker_image == REFERENCE_KEYS["docker_image"]
    assert m.context_menu is not None and m.context_menu.model_extra == MENU_KEYS
    assert m.model_dump(mode="json", exclude_unset=True) == config


def test_refusals_name_the_key_and_keep_the_publish_messages() -> None:
    assert _refusal([GOOD]) == (None, "config.json must hold a JSON object")
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({**GOOD, "name": "  "}, "name", "is missing; give the app a human-readable name"),
        ({**GOOD, "slug": "x"}, "slug", 'must be "owner/name" (letters, digits, ".", "_", "-")'),
        (
            {"name": "X", "slug": "t/x"},
            "main_script",
            "or entrypoint is needed: the script or command that runs the app",
        ),
        ({**GOOD, "main_script": 3}, "main_script", "must be a string"),
        ({**GOOD, "main_script": "../x.py"}, "main_script", "must be a path inside the app folder"),
        ({**GOOD, "main_script": "/x.py"}, "main_script", "must be a path inside the app folder"),
        ({**GOOD, "description": None}, "description", "must be a string"),
        ({**GOOD, "version": 2}, "version", "must be a string"),
        ({**GOOD, "entrypoint": ["python", "x.py"]}, "entrypoint", "must be a string"),
        (
            {**GOOD, "modal_template_state": [1]},
            "modal_template_state",
            "must be a JSON object of option defaults",
        ),
        ({**GOOD, "categories": ["a", 1]}, "categories", "must be a list of strings"),
        ({**GOOD, "headless": "yes"}, "headless", "must be true or false"),
        (
            {**GOOD, "stop_grace_s": True},
            "stop_grace_s",
            "must be a number of seconds from 0 to 3600",
        ),
        (
            {**GOOD, "stop_grace_s": "5"},
            "stop_grace_s",
            "must be a number of seconds from 0 to 3600",
        ),
        (
            {**GOOD, "stop_grace_s": 3601},
            "stop_grace_s",
            "must be a number of seconds from 0 to 3600",
        ),
        ({**GOOD, "context_menu": []}, "context_menu", "must be a JSON object with a target list"),
        (
            {**GOOD, "context_menu": {"target": [1]}},
            "context_menu.target",
            "must be a list of target names",
        ),
    ]
    for config, field, problem in cases:
        assert _refusal(config) == (field, f"config.json: {field} {problem}"), config


def test_new_refusals_at_parse() -> None:
    field, message = _refusal({**GOOD, "entrypoint": "python 'open"})
    assert field == "entrypoint" and "cannot be split into words" in message
    for bad in (3, {"numpy": "1"}, ["numpy", 1], "../requirements.txt"):
        field, message = _refusal({**GOOD, "requirements": bad})
        assert field == "requirements" and "list of requirement lines" in message, bad
    assert Manifest.parse({**GOOD, "requirements": ["numpy==2.0"]}).requirements == ["numpy==2.0"]
    # a blank entrypoint is no entrypoint: then the main_script is needed
    field, _ = _refusal({"name": "X", "slug": "t/x", "entrypoint": "   "})
    assert field == "main_script"


# --- publish, the wire, a real agent -------------------------------------------------------------


def _with_lib(files: dict[str, bytes]) -> bytes:
    return tar_of(files, folders=("lib",))


def _publish(world: World, config: dict[str, Any], **files: bytes) -> Any:
    data = _with_lib({"config.json": json.dumps(config).encode(), "main.py": b"", **files})
    return world.admin.http.post("/modules", files={"archive": ("a.tar.gz", data)})


def test_publish_refuses_with_the_field_and_writes_nothing(world: World) -> None:
    before = world.admin.ok("GET", "/modules")
    cases: list[tuple[Any, str, str]] = [
        ({**GOOD, "entrypoint": ["python", "main.py"]}, "config.entrypoint", "must be a string"),
        ({**GOOD, "entrypoint": "python 'open"}, "config.entrypoint", "cannot be split"),
        ({**GOOD, "requirements": {"numpy": "1"}}, "config.requirements", "requirement lines"),
        ({**GOOD, "requirements": "deps.txt"}, "config.requirements", "not in the app folder"),
        ({**GOOD, "main_script": "lib"}, "config.main_script", "not in the app folder"),
        ({**GOOD, "description": None}, "config.description", "must be a string"),
        ([GOOD], "config", "must hold a JSON object"),
    ]
    for config, field, words in cases:
        r = _publish(world, config)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["field"] == field and words in error["message"], (config, error)
    assert world.admin.ok("GET", "/modules") == before
    ok = _publish(world, {**GOOD, "requirements": "deps.txt"}, **{"deps.txt": b"# none\n"})
    assert ok.status_code == 201, ok.text


def test_reference_keys_travel_as_written_and_run_on_an_agent(world: World) -> None:
    config = json.loads((APPS / "worker" / "config.json").read_text())
    extra = {**REFERENCE_KEYS, "context_menu": {**config["context_menu"], **MENU_KEYS}}
    module_id = world.admin.publish(APPS / "worker", **extra)["module_id"]
    wire = world.admin.ok("GET", f"/modules/{module_id}")
    assert wire["config"] == {**config, **extra}  # the wire carries the manifest as written
    info = ModuleInfo.from_wire(wire)
    assert info.manifest.model_extra is not None
    assert info.manifest.model_extra["icon"] == REFERENCE_KEYS["icon"]
    assert info.manifest.context_menu is not None
    assert info.manifest.context_menu.model_extra == MENU_KEYS
    assert info.get_arguments() == config["modal_template_state"]

    _, token = world.new_agent_token("manifest")
    world.start_agent(token, name="manifest")
    body = {"workspace_id": world.workspace_id, "module_id": module_id, "params": {"lines": 2}}
    task_id = world.admin.ok("POST", "/tasks", json=body)["task_id"]

    def ended() -> Any:
        params = {"until": "finished,error,stopped", "timeout": 5}
        r = world.admin.ok("GET", f"/tasks/{task_id}/wait", params=params)
        return None if r["timed_out"] else r["task"]

    task = wait_for(ended, 60, "the task to end")
    assert task["status"] == "finished", task

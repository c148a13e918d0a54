"""Validation of an app's ``config.json`` and of the state a session is started with."""

from __future__ import annotations

import re
from typing import Any

from appyard.domain.targets import TARGETS, app_targets, type_matches
from appyard.errors import BadRequestError

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_GRACE_S = 3600.0
DEFAULT_GRACE_S = 10.0


def _bad(field: str, problem: str) -> BadRequestError:
    return BadRequestError(f"config.json: {field} {problem}", field=f"config.{field}")


def validate_config(config: Any) -> dict[str, Any]:
    """Check a manifest; every problem names the key and says what is expected."""
    if not isinstance(config, dict):
        raise BadRequestError("config.json must hold a JSON object", field="config")
    name = config.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _bad("name", "is missing; give the app a human-readable name")
    slug = config.get("slug")
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise _bad("slug", 'must be "owner/name" (letters, digits, ".", "_", "-")')
    main_script, entrypoint = config.get("main_script"), config.get("entrypoint")
    if not main_script and not entrypoint:
        raise _bad(
            "main_script", "or entrypoint is needed: the script or command that runs the app"
        )
    for key in ("main_script", "entrypoint", "description", "version", "docker_image"):
        if key in config and not isinstance(config[key], str):
            raise _bad(key, "must be a string")
    if isinstance(main_script, str) and (
        main_script.startswith("/") or ".." in main_script.split("/")
    ):
        raise _bad("main_script", "must be a path inside the app folder")
    if "modal_template_state" in config and not isinstance(config["modal_template_state"], dict):
        raise _bad("modal_template_state", "must be a JSON object of option defaults")
    if "categories" in config and not (
        isinstance(config["categories"], list)
        and all(isinstance(c, str) for c in config["categories"])
    ):
        raise _bad("categories", "must be a list of strings")
    for key in ("headless",):
        if key in config and not isinstance(config[key], bool):
            raise _bad(key, "must be true or false")
    if "stop_grace_s" in config:
        grace = config["stop_grace_s"]
        if (
            isinstance(grace, bool)
            or not isinstance(grace, int | float)
            or not (0 <= grace <= MAX_GRACE_S)
        ):
            raise _bad("stop_grace_s", f"must be a number of seconds from 0 to {MAX_GRACE_S:g}")
    if "context_menu" in config:
        menu = config["context_menu"]
        if not isinstance(menu, dict):
            raise _bad("context_menu", "must be a JSON object with a target list")
        targets = menu.get("target", [])
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise _bad("context_menu.target", "must be a list of target names")
    return config


def grace_of(config: dict[str, Any]) -> float:
    grace = config.get("stop_grace_s", DEFAULT_GRACE_S)
    return float(grace) if isinstance(grace, int | float) else DEFAULT_GRACE_S


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def validate_state(config: dict[str, Any], state: dict[str, Any]) -> str | None:
    """Check a session's state against the manifest; return the target used (or None).

    - an option the manifest defines must keep its default's JSON type;
    - an app with targets (other than ``ecosystem``) needs exactly one target value, of its type.
    """
    defaults = config.get("modal_template_state") or {}
    for key, default in defaults.items():
        if key in state and default is not None:
            want, got = _json_kind(default), _json_kind(state[key])
            if want != got:
                raise BadRequestError(
                    f"params.state.{key} must be a JSON {want} (the manifest's default is "
                    f"{default!r}); got {got} {state[key]!r}",
                    field=f"params.state.{key}",
                )
    declared = app_targets(config)
    targets = [t for t in declared if t != "ecosystem"]
    if not targets:
        return None
    known = [TARGETS[t] for t in targets if t in TARGETS]
    given = [t for t in known if t.state_key is not None and t.state_key in state]
    if not given and "ecosystem" in declared:
        return "ecosystem"  # it may also be run from the ecosystem's Run button, with no target
    if not given:
        keys = ", ".join(f"{t.state_key} ({t.name})" for t in known if t.state_key)
        raise BadRequestError(
            f"params.state needs a target: this app is started from {targets}; pass one of: "
            f"{keys}. ModuleInfo.get_arguments(<target>=...) builds the params.",
            field="params.state",
        )
    if len(given) > 1:
        raise BadRequestError(
            f"params.state has more than one target ({[t.state_key for t in given]}); "
            "pass only one.",
            field="params.state",
        )
    target = given[0]
    value = state[target.state_key]  # type: ignore[index]
    assert target.value_type is not None
    if not type_matches(value, target.value_type):
        raise BadRequestError(
            f"params.state.{target.state_key} must be of type {target.value_type.__name__} "
            f"(target {target.name}); got {value!r}",
            field=f"params.state.{target.state_key}",
        )
    return target.name

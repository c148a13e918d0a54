"""Validation of an app's ``config.json`` and of the state a session is started with."""

from __future__ import annotations

import math
import re
from typing import Any

from appyard.domain.targets import TARGETS, app_targets, type_matches
from appyard.errors import BadRequestError

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_GRACE_S = 3600.0
DEFAULT_GRACE_S = 10.0
OPTION_KEYS = frozenset({"title", "help", "choices"})


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
    if "modal_template_options" in config:
        _check_options(config["modal_template_options"], config.get("modal_template_state") or {})
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


def _check_options(options: Any, defaults: dict[str, Any]) -> None:
    """``modal_template_options``: for options of ``modal_template_state``, a title, a help
    text and a list of choices (the run dialog offers a pick list; a start must pick one)."""
    if not isinstance(options, dict):
        raise _bad(
            "modal_template_options",
            'must be a JSON object: option key → {"title": ..., "help": ..., "choices": [...]}',
        )
    for key, spec in options.items():
        at = f"modal_template_options.{key}"
        if key not in defaults:
            raise _bad(
                at,
                f"describes no option: modal_template_state has no key {key!r} "
                f"(its keys: {sorted(defaults)})",
            )
        if not isinstance(spec, dict):
            raise _bad(at, 'must be a JSON object with "title", "help" and/or "choices"')
        unknown = sorted(set(spec) - OPTION_KEYS)
        if unknown:
            raise _bad(f"{at}.{unknown[0]}", f"is not known; use {sorted(OPTION_KEYS)}")
        for text in ("title", "help"):
            if text in spec and not isinstance(spec[text], str):
                raise _bad(f"{at}.{text}", "must be a string")
        if "choices" in spec:
            _check_choices(f"{at}.choices", spec["choices"], key, defaults[key])


def _check_choices(at: str, choices: Any, key: str, default: Any) -> None:
    want = _json_kind(default)
    if want not in ("string", "number", "boolean"):
        raise _bad(
            at,
            f"need an option whose default is a string, number or boolean; "
            f"modal_template_state.{key} is {want} {default!r}",
        )
    if not isinstance(choices, list) or not choices:
        raise _bad(at, f"must be a non-empty list of {want}s (the values to pick from)")
    for i, choice in enumerate(choices):
        got = _json_kind(choice)
        if got != want:
            raise _bad(
                at,
                f"must all be {want}s like the default {default!r}; item {i} is {got} {choice!r}",
            )
        if isinstance(choice, float) and not math.isfinite(choice):
            raise _bad(at, f"must be finite numbers; item {i} is {choice!r}")
        if choice in choices[:i]:
            raise _bad(at, f"lists {choice!r} twice")
    if default not in choices:
        raise _bad(
            at,
            f"must include the default {default!r} of modal_template_state.{key}; got {choices!r}",
        )


def option_choices(config: dict[str, Any], key: str) -> list[Any] | None:
    """The choices the manifest lists for option ``key``, if any."""
    options = config.get("modal_template_options")
    spec = options.get(key) if isinstance(options, dict) else None
    choices = spec.get("choices") if isinstance(spec, dict) else None
    return choices if isinstance(choices, list) else None


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
    - an option with choices (``modal_template_options.<key>.choices``) must be one of them;
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
        choices = option_choices(config, key)
        if key in state and choices is not None and state[key] not in choices:
            raise BadRequestError(
                f"params.state.{key} must be one of {choices!r} (the manifest's choices); "
                f"got {state[key]!r}",
                field=f"params.state.{key}",
                details={"choices": choices},
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

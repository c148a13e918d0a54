"""The manifest at the server's edge: refused at publish with the key and the problem, and
the state a session is started with checked against it.

The rules themselves live in one model, ``appyard.schemas.manifest.Manifest``, which the agent
and the SDK parse too.
"""

from __future__ import annotations

import math
from typing import Any

from appyard.domain.targets import TARGETS, type_matches
from appyard.errors import BadRequestError, ManifestError
from appyard.schemas.manifest import Manifest, ManifestCache, json_kind

#: stored releases' manifests, parsed once per release (a start reads one on every call)
_RELEASES = ManifestCache()


def _refusal(e: ManifestError, prefix: str = "") -> BadRequestError:
    field = "config" if e.field is None else f"config.{e.field}"
    return BadRequestError(f"{prefix}{e}", field=field)


def parse_manifest(config: Any) -> Manifest:
    """The manifest of an uploaded ``config.json``; a 422 names ``config.<key>`` and says what
    is expected."""
    at = _non_finite(config)
    if at is not None:
        # Python's JSON reader takes Infinity and NaN, which JSON has not: stored, they came
        # back as null (or not at all), not as what the developer wrote
        raise BadRequestError(
            f"config.json: {at} is Infinity or NaN, which JSON has no place for; "
            "write a finite number (or a string)",
            field=f"config.{at}",
        )
    try:
        return Manifest.parse(config)
    except ManifestError as e:
        raise _refusal(e) from None


def _non_finite(value: Any, path: str = "") -> str | None:
    """The key path (``a.b.0``) of the first Infinity or NaN in ``value``; None if none."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    items: Any = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        found = _non_finite(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def release_manifest(sha256: str, config: Any) -> Manifest:
    """The manifest of a stored release. One stored under older, looser rules is a 422 that
    asks for a new release (nothing is started with a manifest the agent would refuse)."""
    try:
        return _RELEASES.get(sha256, config)
    except ManifestError as e:
        raise _refusal(
            e, "the release's manifest breaks a rule; publish it again fixed: "
        ) from None


def validate_state(manifest: Manifest, state: dict[str, Any]) -> str | None:
    """Check a session's state against the manifest; return the target used (or None).

    - an option the manifest defines must keep its default's JSON type;
    - an option with choices (``modal_template_options.<key>.choices``) must be one of them;
    - an app with targets (other than ``ecosystem``) needs exactly one target value, of its type.
    """
    for key, default in manifest.modal_template_state.items():
        if key in state and default is not None:
            want, got = json_kind(default), json_kind(state[key])
            if want != got:
                raise BadRequestError(
                    f"params.state.{key} must be a JSON {want} (the manifest's default is "
                    f"{default!r}); got {got} {state[key]!r}",
                    field=f"params.state.{key}",
                )
        choices = manifest.option_choices(key)
        if key in state and choices is not None and state[key] not in choices:
            raise BadRequestError(
                f"params.state.{key} must be one of {choices!r} (the manifest's choices); "
                f"got {state[key]!r}",
                field=f"params.state.{key}",
                details={"choices": choices},
            )
    declared = manifest.targets
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

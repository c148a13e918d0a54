"""The checks of a pipeline at submit, before anything runs: every problem, with where it is.

:func:`check_pipeline` finds, in one pass, everything that would fail later: ids given twice,
needs naming no step, cycles, expressions that cannot be read or that read what a step cannot
see (an unknown input, a step that is not an ancestor, ``${item}`` outside a ``for_each``),
inputs a run gives that the pipeline has not, or lacks without a default. The checks that
need the catalog (the app and version exist; params and targets fit the app's manifest, as a
start checks them, where their values are known at submit) go through a :class:`Catalog`
the caller gives: the server plugs its database in, tests a dictionary of real manifests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from appyard.domain.expressions import (
    ExpressionError,
    Found,
    Ref,
    Root,
    Scope,
    Unknown,
    find_refs,
    parse_template,
    resolve,
)
from appyard.domain.pipeline import Problem, ancestors, find_cycle
from appyard.domain.targets import TARGETS, type_matches
from appyard.schemas.common import json_size
from appyard.schemas.manifest import Manifest, json_kind
from appyard.schemas.pipeline import (
    MAX_FOR_EACH_ITEMS,
    MAX_INPUT_BYTES,
    PipelineDoc,
    Step,
    json_problems,
    load_document,
    parse_problems,
    refusal,
)


@dataclass(frozen=True)
class AppMissing:
    """The catalog has no such app (``at="app"``) or no such version of it (``"version"``);
    ``reason`` is the sentence a user reads (what there is instead, when it may be said)."""

    reason: str
    at: Literal["app", "version"] = "app"


class Catalog(Protocol):
    """Where a submit-time check finds an app's manifest: by slug and version (None: the
    newest release), as the team submitting the pipeline sees the catalog."""

    def manifest(self, slug: str, version: str | None) -> Manifest | AppMissing: ...


#: a problem of a start's state: the state key it is about (None: the state as a whole), why
StateProblem = tuple[str | None, str]


def _kind(value: Any) -> str | None:
    """The JSON type of a value; None when it is not known yet."""
    if isinstance(value, Unknown):
        return value.kind
    return json_kind(value)


def state_problems(manifest: Manifest, state: Mapping[str, Any]) -> list[StateProblem]:
    """What a start would refuse in ``state`` (the rules of the server's start: an option keeps
    its default's JSON type and is one of its choices; an app with targets gets exactly one, of
    its type). Values not known yet (:class:`Unknown`) are checked only as far as they are
    known: a value written into text is a string."""
    out: list[StateProblem] = []
    for key, default in manifest.modal_template_state.items():
        if key not in state:
            continue
        value = state[key]
        if default is not None:
            want, got = json_kind(default), _kind(value)
            if got is not None and want != got:
                shown = "text" if isinstance(value, Unknown) else f"{got} {value!r}"
                out.append(
                    (
                        key,
                        f"must be a JSON {want} (the manifest's default is {default!r}); "
                        f"got {shown}",
                    )
                )
                continue
        choices = manifest.option_choices(key)
        if choices is not None and not isinstance(value, Unknown) and value not in choices:
            out.append((key, f"must be one of {choices!r} (the manifest's choices); got {value!r}"))
    declared = manifest.targets
    targets = [t for t in declared if t != "ecosystem"]
    if not targets:
        return out
    known = [TARGETS[t] for t in targets if t in TARGETS]
    given = [t for t in known if t.state_key is not None and t.state_key in state]
    if not given and "ecosystem" not in declared:
        keys = ", ".join(f"{t.state_key} ({t.name})" for t in known if t.state_key)
        out.append(
            (None, f"needs a target: this app is started from {targets}; pass one of: {keys}")
        )
    elif len(given) > 1:
        out.append(
            (None, f"has more than one target ({[t.state_key for t in given]}); pass only one")
        )
    elif given:
        target = given[0]
        assert target.state_key is not None and target.value_type is not None
        value = state[target.state_key]
        if isinstance(value, Unknown):
            bad = value.kind == "string" and target.value_type is not str
        else:
            bad = not type_matches(value, target.value_type)
        if bad:
            shown = "text" if isinstance(value, Unknown) else repr(value)
            out.append(
                (
                    target.state_key,
                    f"must be of type {target.value_type.__name__} (target {target.name}); "
                    f"got {shown}",
                )
            )
    return out


def step_state(params: Mapping[str, Any], target: Mapping[str, Any] | None) -> dict[str, Any]:
    """The state a step's task starts with: its params, and its target's value under the
    target's state key (``{images_project: 7}`` → ``projectId: 7``). The app's defaults are
    not added: a start takes the state over them."""
    state = dict(params)
    for name, value in (target or {}).items():
        spec = TARGETS[name]
        if spec.state_key is not None:
            state[spec.state_key] = value
    return state


def _names(names: Iterable[str], most: int = 20) -> str:
    """Names a message lists, sorted; past ``most``, how many more (a message stays short)."""
    ordered = sorted(names)
    shown = str(ordered[:most])
    return shown if len(ordered) <= most else f"{shown[:-1]}, ... and {len(ordered) - most} more]"


def _graph_problems(doc: PipelineDoc) -> tuple[list[Problem], dict[str, list[str]]]:
    """Ids given twice, needs naming no step (or itself, or one twice), and cycles; with the
    needs of each (first) id, known steps only."""
    out: list[Problem] = []
    first: dict[str, int] = {}
    for i, s in enumerate(doc.steps):
        if s.id in first:
            out.append(Problem(f"steps[{i}].id", f"{s.id!r} is the id of steps[{first[s.id]}] too"))
        else:
            first[s.id] = i
    needs: dict[str, list[str]] = {}
    for i, s in enumerate(doc.steps):
        seen: set[str] = set()
        for k, n in enumerate(s.needs):
            at = f"steps[{i}].needs[{k}]"
            if n == s.id:
                out.append(Problem(at, f"step {s.id!r} cannot need itself"))
            elif n not in first:
                out.append(Problem(at, f"there is no step {n!r} (the steps: {_names(first)})"))
            elif n in seen:
                out.append(Problem(at, f"{n!r} is listed twice"))
            seen.add(n)
        if first[s.id] == i:
            needs[s.id] = [n for n in dict.fromkeys(s.needs) if n in first and n != s.id]
    cycle = find_cycle(needs)
    if cycle is not None:
        at = f"steps[{first[cycle[0]]}].needs"
        out.append(Problem(at, "the needs go round: " + " -> ".join(cycle)))
    return out, needs


def _ref_problem(
    ref: Ref,
    step: Step,
    doc: PipelineDoc,
    ids: frozenset[str],
    ancestry: frozenset[str],
    in_for_each: bool,
) -> str | None:
    """Why a step cannot read this expression, or None when it can."""
    if ref.root is Root.ITEM:
        if in_for_each:
            return f"{ref.text} cannot be used in for_each itself: it is each item of it"
        if step.for_each is None:
            return f"{ref.text} is only known in a step with for_each"
        return None
    if ref.root is Root.INPUTS:
        name = ref.path[0]
        if name not in doc.inputs:
            return (
                f"{ref.text} reads input {name!r}, which the pipeline has not "
                f"(its inputs: {_names(doc.inputs)})"
            )
        return None
    assert ref.step is not None
    if ref.step == step.id:
        return f"{ref.text}: a step cannot read its own outputs"
    if ref.step not in ids:
        return (
            f"{ref.text} reads step {ref.step!r}, which is not a step of the pipeline "
            f"(the steps: {_names(ids)})"
        )
    if ref.step not in ancestry:
        return (
            f"{ref.text} reads step {ref.step!r}, which step {step.id!r} does not need "
            f"(directly or through another step): add {ref.step!r} to its needs"
        )
    return None


def _expression_problems(doc: PipelineDoc, needs: Mapping[str, list[str]]) -> list[Problem]:
    out: list[Problem] = []
    ancestry = ancestors(needs)
    ids = frozenset(s.id for s in doc.steps)
    for i, s in enumerate(doc.steps):
        mine = ancestry.get(s.id, frozenset())
        where: list[tuple[str, Any]] = [("params", s.params), ("target", s.target)]
        if s.for_each is not None:
            where.append(("for_each", s.for_each))
        for field, value in where:
            if value is None:
                continue
            found: list[Found] = find_refs(value, f"steps[{i}].{field}")
            for f in found:
                if f.error is not None:
                    out.append(Problem(f.at, f.error.reason))
                    continue
                assert f.ref is not None
                reason = _ref_problem(f.ref, s, doc, ids, mine, field == "for_each")
                if reason is not None:
                    out.append(Problem(f.at, reason))
        unread = any(p.at == f"steps[{i}].for_each" for p in out)
        if isinstance(s.for_each, str) and not unread and parse_template(s.for_each).whole is None:
            out.append(
                Problem(
                    f"steps[{i}].for_each",
                    "must be a list, or one expression that gives a list "
                    "(like ${steps.S.outputs.K}) and nothing else",
                )
            )
        if s.max_parallel is not None and s.for_each is None:
            out.append(
                Problem(f"steps[{i}].max_parallel", "is for a step with for_each; add for_each")
            )
    return out


def _input_problems(doc: PipelineDoc, given: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    for name, value in given.items():
        at = f"inputs.{name}"
        if name not in doc.inputs:
            out.append(
                Problem(at, f"is not an input of the pipeline (its inputs: {_names(doc.inputs)})")
            )
            continue
        bad = json_problems(value, at)
        if bad:
            out.extend(bad)
        elif json_size(value) > MAX_INPUT_BYTES:
            out.append(Problem(at, f"takes more than {MAX_INPUT_BYTES} bytes of JSON"))
    for name, spec in doc.inputs.items():
        if name not in given and not spec.has_default:
            out.append(Problem(f"inputs.{name}", "has no default; the run must give it"))
    return out


@dataclass(frozen=True)
class _Known:
    """A step's values as far as they are known at submit (outputs and items not yet)."""

    params: dict[str, Any]
    target: dict[str, Any]


def _value_problems(
    doc: PipelineDoc, inputs: Mapping[str, Any], skip: set[int]
) -> tuple[list[Problem], dict[int, _Known]]:
    """Resolve what is known at submit (the inputs): an expression that reads into an input
    that has no such key is a problem now, and a for_each known now must be a list."""
    out: list[Problem] = []
    known: dict[int, _Known] = {}
    scope = Scope(inputs=inputs, partial=True)
    for i, s in enumerate(doc.steps):
        if i in skip:
            continue
        try:
            params = resolve(s.params, scope, f"steps[{i}].params")
            target = resolve(s.target or {}, scope, f"steps[{i}].target")
            items = resolve(s.for_each, scope, f"steps[{i}].for_each")
        except ExpressionError as e:
            out.append(Problem(e.at, e.reason))
            continue
        if s.for_each is not None and not isinstance(items, list | Unknown):
            out.append(
                Problem(f"steps[{i}].for_each", f"must give a list; it gives {json_kind(items)}")
            )
        elif isinstance(items, list) and len(items) > MAX_FOR_EACH_ITEMS:
            out.append(
                Problem(
                    f"steps[{i}].for_each",
                    f"gives {len(items)} items; the limit is {MAX_FOR_EACH_ITEMS}",
                )
            )
        known[i] = _Known(params, target)
    return out, known


def _catalog_problems(
    doc: PipelineDoc, catalog: Catalog, known: Mapping[int, _Known]
) -> list[Problem]:
    out: list[Problem] = []
    seen: dict[tuple[str, str | None], Manifest | AppMissing] = {}
    for i, s in enumerate(doc.steps):
        key = (s.app, s.version)
        if key not in seen:
            seen[key] = catalog.manifest(s.app, s.version)
        found = seen[key]
        if isinstance(found, AppMissing):
            out.append(Problem(f"steps[{i}].{found.at}", found.reason))
            continue
        declared = found.targets
        for name in s.target or {}:
            if name not in declared:
                out.append(
                    Problem(
                        f"steps[{i}].target.{name}",
                        f"app {s.app} is not started from {name}; its targets: {declared}",
                    )
                )
        values = known.get(i)
        if values is None:
            continue  # its expressions have problems of their own
        where = {
            TARGETS[n].state_key: f"steps[{i}].target.{n}"
            for n in values.target
            if TARGETS[n].state_key
        }
        for state_key, reason in state_problems(found, step_state(values.params, values.target)):
            if state_key is None:
                at = f"steps[{i}].target" if s.target else f"steps[{i}].params"
            else:
                at = where.get(state_key, f"steps[{i}].params.{state_key}")
            out.append(Problem(at, reason))
    return out


def check_pipeline(
    doc: PipelineDoc,
    *,
    inputs: Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> list[Problem]:
    """Every problem of a parsed document, in document order of the kinds of check.

    ``inputs``: the values a run is given (None: the pipeline is only checked or saved, and
    inputs without a default are not asked for). ``catalog``: where apps are looked up (None:
    apps are not checked); params and targets are checked against each app's manifest with
    the inputs known (given, else defaults), step outputs and items not yet.
    """
    problems, needs = _graph_problems(doc)
    expression_problems = _expression_problems(doc, needs)
    problems += expression_problems
    if inputs is not None:
        problems += _input_problems(doc, inputs)
    unreadable = {
        i
        for i in range(len(doc.steps))
        if any(p.at.startswith(f"steps[{i}].") for p in expression_problems)
    }
    value_problems, known = _value_problems(doc, {**doc.defaults(), **(inputs or {})}, unreadable)
    problems += value_problems
    if catalog is not None:
        problems += _catalog_problems(doc, catalog, known)
    return problems


def validate_pipeline(
    source: Any,
    *,
    inputs: Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> PipelineDoc:
    """Parse and check a document (a JSON value, or YAML/JSON text): the document, or a
    :class:`BadRequestError` (422) listing every problem (``details.problems``)."""
    raw = load_document(source) if isinstance(source, str | bytes) else source
    doc, problems = parse_problems(raw)
    if doc is None:
        raise refusal(problems)
    problems = check_pipeline(doc, inputs=inputs, catalog=catalog)
    if problems:
        raise refusal(problems)
    return doc


def catalog_of(lookup: Callable[[str, str | None], Manifest | AppMissing]) -> Catalog:
    """A :class:`Catalog` of a plain function (slug, version) → manifest or :class:`AppMissing`."""

    class _Of:
        def manifest(self, slug: str, version: str | None) -> Manifest | AppMissing:
            return lookup(slug, version)

    return _Of()


def step_items(doc: PipelineDoc, step_id: str, scope: Scope) -> list[Any] | None:
    """The items a ``for_each`` step runs for, resolved when it starts (None: no for_each).
    :class:`ExpressionError` names the expression when they are not there, not a list, or
    more than the cap."""
    i, step = _indexed(doc, step_id)
    if step.for_each is None:
        return None
    at = f"steps[{i}].for_each"
    items = resolve(step.for_each, scope, at)
    text = step.for_each if isinstance(step.for_each, str) else "for_each"
    if not isinstance(items, list):
        raise ExpressionError(
            f"{text} gives {json_kind(items)}, not a list to run the step for",
            expression=text,
            at=at,
        )
    if len(items) > MAX_FOR_EACH_ITEMS:
        raise ExpressionError(
            f"{text} gives {len(items)} items; the limit is {MAX_FOR_EACH_ITEMS}",
            expression=text,
            at=at,
        )
    return items


def step_start_state(doc: PipelineDoc, step_id: str, scope: Scope) -> dict[str, Any]:
    """The state a step's task (or one item's: ``scope.with_item``) starts with: its params
    and target resolved, the target under its state key. :class:`ExpressionError` names the
    first expression whose value is not there: the step ends in error with that message."""
    i, step = _indexed(doc, step_id)
    params = resolve(step.params, scope, f"steps[{i}].params")
    target = resolve(step.target or {}, scope, f"steps[{i}].target")
    return step_state(params, target)


def _indexed(doc: PipelineDoc, step_id: str) -> tuple[int, Step]:
    i = doc.position(step_id)
    return i, doc.steps[i]

"""``${...}`` expressions of a pipeline: found at submit, resolved when a step starts.

A pipeline passes values forward with expressions inside the strings of a step's ``params``,
``target`` and ``for_each``:

- ``${inputs.NAME}``: an input of the run (its given value, else its default);
- ``${steps.STEP.outputs.KEY}``: an output a finished step set (``api.task.set_output``);
- ``${steps.STEP.task_id}``: the task (session) id of a finished step;
- ``${item}``: the item a ``for_each`` step runs for (only inside such a step).

After the name, ``.KEY`` / ``.0`` segments go into objects and arrays (``${item.id}``,
``${steps.s.outputs.sizes.0}``). A string that is one expression and nothing else keeps the
value's JSON type (a number stays a number, a list a list); an expression inside other text
is written into it (a string as it is, anything else as compact JSON). ``$${`` writes a
literal ``${``. Object keys are never expressions.

Pure: no I/O, imports nothing of ours. The server resolves a step's values with
:func:`resolve` just before it starts the step; a value that is not there is an
:class:`ExpressionError` naming the expression, which becomes that step's error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: longest expression between ``${`` and ``}``
MAX_EXPRESSION = 500
#: a name or a key of an expression: a step id, an input, an output key, an array index
SEGMENT_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_HELP = "use inputs.NAME, steps.STEP.outputs.KEY, steps.STEP.task_id or item"


class ExpressionError(ValueError):
    """An expression that cannot be read or resolved; ``expression`` is its text (``${...}``)
    and ``at`` where it is (``params.folder``), so the message a user reads names both."""

    def __init__(self, message: str, *, expression: str, at: str = "") -> None:
        super().__init__(f"{at}: {message}" if at else message)
        self.reason = message
        self.expression = expression
        self.at = at


class Root(StrEnum):
    """What an expression reads."""

    INPUTS = "inputs"
    OUTPUTS = "outputs"  # steps.STEP.outputs.KEY
    TASK_ID = "task_id"  # steps.STEP.task_id
    ITEM = "item"


@dataclass(frozen=True)
class Ref:
    """One parsed expression: ``text`` as written (``${inputs.folder}``), what it reads, the
    step it names (outputs and task id), and the keys after the name (the input's name or the
    output's key first)."""

    text: str
    root: Root
    step: str | None = None
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class Template:
    """A string split into literal text and expressions, in order."""

    parts: tuple[str | Ref, ...]

    @property
    def refs(self) -> list[Ref]:
        return [p for p in self.parts if isinstance(p, Ref)]

    @property
    def whole(self) -> Ref | None:
        """The expression when the string is that one expression and nothing else."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Ref):
            return self.parts[0]
        return None


def parse_ref(body: str) -> Ref:
    """The expression inside ``${`` and ``}``; :class:`ExpressionError` says what is wrong."""
    text = "${" + body + "}"
    if len(body) > MAX_EXPRESSION:
        raise ExpressionError(
            f"{text[:40]}... is longer than {MAX_EXPRESSION} characters", expression=text
        )
    words = body.strip().split(".")
    bad = [w for w in words if not SEGMENT_RE.match(w)]
    if bad:
        shown = "an empty name" if not bad[0] else f"{bad[0]!r}"
        raise ExpressionError(
            f"{text} has {shown}: names are letters, digits, '_' and '-', joined by '.'; {_HELP}",
            expression=text,
        )
    head, rest = words[0], words[1:]
    if head == "inputs":
        if not rest:
            raise ExpressionError(f"{text} names no input; write ${{inputs.NAME}}", expression=text)
        return Ref(text, Root.INPUTS, path=tuple(rest))
    if head == "item":
        return Ref(text, Root.ITEM, path=tuple(rest))
    if head == "steps":
        if len(rest) >= 2 and rest[1] == "task_id" and len(rest) == 2:
            return Ref(text, Root.TASK_ID, step=rest[0])
        if len(rest) >= 3 and rest[1] == "outputs":
            return Ref(text, Root.OUTPUTS, step=rest[0], path=tuple(rest[2:]))
        raise ExpressionError(
            f"{text} must be steps.STEP.outputs.KEY or steps.STEP.task_id", expression=text
        )
    raise ExpressionError(f"{text} reads {head!r}, which is not known; {_HELP}", expression=text)


def _scan(text: str) -> Iterator[str | Ref | ExpressionError]:
    """The parts of a string in order: literal text, expressions, and each expression that
    cannot be read (the scan goes on after it, so every one is found)."""
    literal: list[str] = []
    i = 0
    while True:
        j = text.find("${", i)
        if j < 0:
            literal.append(text[i:])
            break
        if j > 0 and text[j - 1] == "$":
            literal.append(text[i : j - 1] + "${")
            i = j + 2
            continue
        literal.append(text[i:j])
        end = text.find("}", j + 2)
        if end < 0:
            shown = text[j : j + 40]
            yield ExpressionError(
                f"{shown!r} opens an expression that is not closed with '}}' "
                "(write $${ for a literal ${)",
                expression=text[j:],
            )
            return
        if any(literal):
            yield "".join(literal)
        literal = []
        try:
            yield parse_ref(text[j + 2 : end])
        except ExpressionError as e:
            yield e
        i = end + 1
    if any(literal):
        yield "".join(literal)


def parse_template(text: str) -> Template:
    """Split a string into text and expressions; ``$${`` is a literal ``${``. The first
    expression that cannot be read raises :class:`ExpressionError`."""
    parts: list[str | Ref] = []
    for part in _scan(text):
        if isinstance(part, ExpressionError):
            raise part
        parts.append(part)
    return Template(tuple(parts))


def join_at(at: str, key: str | int) -> str:
    """A location one level down: ``params`` + ``folder`` → ``params.folder``; ``[2]`` for an
    array index."""
    if isinstance(key, int):
        return f"{at}[{key}]"
    return f"{at}.{key}" if at else key


def strings_in(value: Any, at: str = "") -> Iterator[tuple[str, str]]:
    """Every string of a JSON value with its location (object keys are not values)."""
    stack: list[tuple[Any, str]] = [(value, at)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            stack.extend((v, join_at(where, str(k))) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, join_at(where, i)) for i, v in reversed(list(enumerate(item))))


@dataclass(frozen=True)
class Found:
    """An expression found in a value, where it is, or the syntax problem found there."""

    at: str
    ref: Ref | None = None
    error: ExpressionError | None = None


def find_refs(value: Any, at: str = "") -> list[Found]:
    """Every expression in the strings of a JSON value, in document order, each with its
    location; a string that cannot be read is one ``Found`` with the error."""
    found: list[Found] = []
    for where, text in strings_in(value, at):
        if "${" not in text:
            continue
        for part in _scan(text):
            if isinstance(part, ExpressionError):
                found.append(Found(where, error=part))
            elif isinstance(part, Ref):
                found.append(Found(where, ref=part))
    return found


@dataclass(frozen=True)
class StepResult:
    """What later steps may read of a finished step: its outputs and its task id (for a
    ``for_each`` step, see :func:`gather`)."""

    outputs: Mapping[str, Any] = field(default_factory=dict)
    task_id: int | list[int] | None = None


def gather(items: Sequence[StepResult]) -> StepResult:
    """A ``for_each`` step as later steps read it: each output key as the list of every item's
    value, in item order (a key only when every item set it), and the list of task ids."""
    keys: set[str] = set(items[0].outputs) if items else set()
    for r in items[1:]:
        keys &= set(r.outputs)
    outputs = {k: [r.outputs[k] for r in items] for k in sorted(keys)}
    ids = [r.task_id for r in items if isinstance(r.task_id, int)]
    return StepResult(outputs=outputs, task_id=ids)


class Unknown:
    """A value not known yet (a step's output at submit): ``kind`` is ``"string"`` when the
    expression sits inside text (the result is a string), else None."""

    __slots__ = ("kind", "ref")

    def __init__(self, ref: Ref, kind: str | None = None) -> None:
        self.ref = ref
        self.kind = kind

    def __repr__(self) -> str:
        return f"Unknown({self.ref.text})"


_NO_ITEM = object()


@dataclass(frozen=True)
class Scope:
    """What expressions can read: the run's inputs (defaults filled in), the finished steps'
    results by id, and the item of a ``for_each`` step. ``partial``: what is not in the scope
    (a step, the item, an input without a value) resolves to :class:`Unknown` instead of
    failing; submit-time checks use it to check what is already known."""

    inputs: Mapping[str, Any] = field(default_factory=dict)
    steps: Mapping[str, StepResult] = field(default_factory=dict)
    item: Any = _NO_ITEM
    partial: bool = False

    def with_item(self, item: Any) -> Scope:
        return Scope(self.inputs, self.steps, item, self.partial)


def _dig(value: Any, path: Sequence[str], ref: Ref, what: str) -> Any:
    for n, key in enumerate(path):
        here = what if n == 0 else f"{what}.{'.'.join(path[:n])}"
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        elif isinstance(value, list):
            raise ExpressionError(
                f"{ref.text}: {here} is an array of {len(value)}; it has no item {key!r}",
                expression=ref.text,
            )
        elif isinstance(value, dict):
            raise ExpressionError(
                f"{ref.text}: {here} has no key {key!r} (its keys: {sorted(value)})",
                expression=ref.text,
            )
        else:
            raise ExpressionError(
                f"{ref.text}: {here} is {json.dumps(value)[:60]}, not an object or array",
                expression=ref.text,
            )
    return value


def value_of(ref: Ref, scope: Scope) -> Any:
    """The value an expression reads in ``scope``; :class:`ExpressionError` names it when the
    value is not there (or :class:`Unknown` in a partial scope)."""
    if ref.root is Root.ITEM:
        if scope.item is _NO_ITEM:
            if scope.partial:
                return Unknown(ref)
            raise ExpressionError(
                f"{ref.text} is only known inside a for_each step", expression=ref.text
            )
        return _dig(scope.item, ref.path, ref, "item")
    if ref.root is Root.INPUTS:
        name = ref.path[0]
        if name not in scope.inputs:
            if scope.partial:
                return Unknown(ref)
            raise ExpressionError(
                f"{ref.text}: the run has no value for input {name!r}", expression=ref.text
            )
        return _dig(scope.inputs[name], ref.path[1:], ref, f"inputs.{name}")
    assert ref.step is not None
    result = scope.steps.get(ref.step)
    if result is None:
        if scope.partial:
            return Unknown(ref)
        raise ExpressionError(
            f"{ref.text}: step {ref.step!r} has not finished, so it has no outputs yet",
            expression=ref.text,
        )
    if ref.root is Root.TASK_ID:
        if result.task_id is None:
            raise ExpressionError(f"{ref.text}: step {ref.step!r} ran no task", expression=ref.text)
        return result.task_id
    key = ref.path[0]
    if key not in result.outputs:
        raise ExpressionError(
            f"{ref.text}: step {ref.step!r} finished without setting output {key!r} "
            f"(its outputs: {sorted(result.outputs)})",
            expression=ref.text,
        )
    return _dig(result.outputs[key], ref.path[1:], ref, f"steps.{ref.step}.outputs.{key}")


def as_text(value: Any) -> str:
    """How a value is written into text: a string as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def resolve_string(text: str, scope: Scope, at: str = "") -> Any:
    """One string with its expressions resolved: a whole-string expression keeps its value's
    JSON type, else the text with each value written in."""
    if "${" not in text:
        return text
    try:
        template = parse_template(text)
        whole = template.whole
        if whole is not None:
            return value_of(whole, scope)
        out: list[str] = []
        for part in template.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = value_of(part, scope)
            if isinstance(value, Unknown):
                return Unknown(part, kind="string")
            out.append(as_text(value))
        return "".join(out)
    except ExpressionError as e:
        raise ExpressionError(e.reason, expression=e.expression, at=at) from None


def resolve(value: Any, scope: Scope, at: str = "") -> Any:
    """A JSON value with the expressions of its strings resolved (a new value; object keys
    as they are). The first expression that cannot be resolved raises, naming it and ``at``
    plus the key path inside ``value``."""
    if isinstance(value, str):
        return resolve_string(value, scope, at)
    if isinstance(value, dict):
        return {k: resolve(v, scope, join_at(at, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, scope, join_at(at, i)) for i, v in enumerate(value)]
    return value

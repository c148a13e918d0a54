"""The pipeline document: one model for the server, the SDK's builder and the CLI.

A pipeline is written in YAML (a file) or JSON (over the API): the same document, read by
:func:`load_document` into plain JSON values and parsed by :meth:`PipelineDoc.parse`. Every
problem of its shape is reported at once, each with where it is (``steps[1].retries.limit``)
and a sentence; the checks that need the whole graph, the inputs or the catalog are in
``appyard.schemas.pipeline_check``. The format is described in ``docs/pipelines.md``.

YAML is read with a safe loader (plain data only), with no anchors or aliases (a few bytes of
them can stand for gigabytes), no key twice, and the same caps as JSON: size, nesting, and
plain JSON values (a YAML date or binary is refused: quote it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from appyard.domain.expressions import SEGMENT_RE
from appyard.domain.pipeline import DEFAULT_RETRY_ON, Problem, RetryOn, StepRule, When
from appyard.domain.targets import TARGETS
from appyard.errors import BadRequestError
from appyard.schemas.common import (
    MAX_DESCRIPTION,
    MAX_ID,
    MAX_JSON_DEPTH,
    MAX_PARAMS_BYTES,
    json_depth,
    json_size,
)
from appyard.schemas.manifest import MAX_SLUG, SLUG_RE

#: caps of a pipeline document (docs/pipelines.md, "Limits"); more is refused, naming the field
MAX_DOCUMENT_BYTES = 1024 * 1024  # the YAML or JSON text, and the document as compact JSON
MAX_STEPS = 1000
MAX_INPUTS = 100
MAX_NAME = 100  # the pipeline's name
MAX_STEP_ID = 100  # a step's id, an input's name
MAX_VERSION = 100  # an app's version (as a start takes it)
MAX_INPUT_BYTES = 64 * 1024  # an input's default or given value, as compact JSON
MAX_FOR_EACH_ITEMS = 10_000  # items of one for_each (a literal list, or at run time)
MAX_PARALLEL = 1000
MAX_RETRIES = 100
MAX_BACKOFF_S = 24 * 3600.0
MAX_TIMEOUT_S = 30 * 24 * 3600.0
#: nesting of the YAML/JSON text: the document's own levels plus a step's params
MAX_DOCUMENT_DEPTH = MAX_JSON_DEPTH + 8
#: at most this many problems are listed in one refusal (every one is still returned)
MAX_LISTED_PROBLEMS = 100

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
AGENT_ANY: Final = "any"


def _fail(problem: str, at: str = "") -> PydanticCustomError:
    """A document problem: ``problem`` is the sentence, ``at`` the key below the field."""
    return PydanticCustomError("pipeline", "{problem}", {"problem": problem, "at": at})


def _checked(ok: Callable[[Any], bool], problem: str) -> BeforeValidator:
    """Check the raw value before Pydantic does, so the author reads our sentence and nothing
    is coerced (``"5"`` is not a number, ``1`` is not ``true``)."""

    def check(value: Any) -> Any:
        if not ok(value):
            raise _fail(problem)
        return value

    return BeforeValidator(check)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_name(value: Any, limit: int = MAX_STEP_ID) -> bool:
    """A step id or an input name: what an expression can name."""
    return isinstance(value, str) and len(value) <= limit and SEGMENT_RE.match(value) is not None


_NAME_RULE = f"1 to {MAX_STEP_ID} letters, digits, '_' or '-'"


def _object(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _fail("must be an object")
    return value


def _params(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _fail("must be an object: option → value (over the app's defaults)")
    if json_depth(value) > MAX_JSON_DEPTH:
        raise _fail(f"is nested deeper than {MAX_JSON_DEPTH} levels")
    size = json_size(value)
    if size > MAX_PARAMS_BYTES:
        raise _fail(f"is {size} bytes of JSON; the limit is {MAX_PARAMS_BYTES} bytes")
    return value


def _target(value: Any) -> Any:
    names = sorted(TARGETS)
    if not isinstance(value, dict) or len(value) != 1:
        raise _fail(
            f"must be an object of one target, like {{images_project: 7}}; targets: {names}"
        )
    name = next(iter(value))
    if name not in TARGETS:
        raise _fail(f"is not a target; use one of {names}", at=str(name))
    return value


def _needs(value: Any) -> Any:
    if not isinstance(value, list) or len(value) > MAX_STEPS:
        raise _fail(f"must be a list of step ids (at most {MAX_STEPS})")
    for i, need in enumerate(value):
        if not _is_name(need):
            raise _fail(f"must be a step id ({_NAME_RULE})", at=f"[{i}]")
    return value


def _for_each(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) > 1000:
            raise _fail("must be one expression of at most 1000 characters")
        return value
    if isinstance(value, list):
        if len(value) > MAX_FOR_EACH_ITEMS:
            raise _fail(f"has {len(value)} items; the limit is {MAX_FOR_EACH_ITEMS}")
        return value
    raise _fail("must be a list of items, or one expression that gives a list")


def _agent(value: Any) -> Any:
    if value == AGENT_ANY or (_is_whole(value) and 1 <= value <= MAX_ID):
        return value
    raise _fail(f'must be an agent id (a whole number) or "{AGENT_ANY}" (any online agent)')


def _one_of(kind: type[When] | type[RetryOn]) -> Callable[[Any], Any]:
    values = [m.value for m in kind]

    def check(value: Any) -> Any:
        if not isinstance(value, str) or value not in values:
            raise _fail(f"must be one of {values}")
        return value

    return check


def _retry_on(value: Any) -> Any:
    values = [m.value for m in RetryOn]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v in values for v in value)
        or len(set(value)) != len(value)
    ):
        raise _fail(f"must be a non-empty list of distinct ends of an attempt: {values}")
    return value


def _input_value(value: Any) -> Any:
    size = json_size(value)
    if size > MAX_INPUT_BYTES:
        raise _fail(f"is {size} bytes of JSON; the limit is {MAX_INPUT_BYTES} bytes")
    return value


def _text(limit: int) -> BeforeValidator:
    return _checked(
        lambda v: isinstance(v, str) and len(v) <= limit and "\x00" not in v,
        f"must be a string of at most {limit} characters, without NUL",
    )


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Doc):
    """``inputs.<name>``: an input of the pipeline; without ``default`` a run must give it."""

    default: Annotated[Any, BeforeValidator(_input_value)] = None
    description: Annotated[str | None, _text(MAX_DESCRIPTION)] = None

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set


class RetryPolicy(_Doc):
    """``retries``: how many more attempts a failed attempt gets, after how long, and which
    ends of an attempt count (a stop of the run never does)."""

    limit: Annotated[
        int,
        Strict(),
        _checked(
            lambda v: _is_whole(v) and 0 <= v <= MAX_RETRIES,
            f"must be a whole number of retries from 0 to {MAX_RETRIES}",
        ),
    ]
    backoff_s: Annotated[
        float,
        Strict(),
        _checked(
            lambda v: _is_number(v) and 0 <= v <= MAX_BACKOFF_S,
            f"must be a number of seconds from 0 to {MAX_BACKOFF_S:g}",
        ),
    ] = 0.0
    retry_on: Annotated[list[RetryOn], BeforeValidator(_retry_on)] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_ON)
    )


class Step(_Doc):
    """``steps[i]``: one app to run, its values, and when it runs."""

    id: Annotated[str, _checked(_is_name, f"must be {_NAME_RULE}")]
    #: the app's slug, ``owner/name``
    app: Annotated[
        str,
        _checked(
            lambda v: isinstance(v, str) and len(v) <= MAX_SLUG and SLUG_RE.match(v) is not None,
            f'must be an app\'s slug "owner/name" (at most {MAX_SLUG} characters)',
        ),
    ]
    #: the app's release to run; None: the newest when the step starts
    version: Annotated[
        str | None,
        _checked(
            lambda v: isinstance(v, str) and 0 < len(v) <= MAX_VERSION and "\x00" not in v,
            f"must be a version: a string of 1 to {MAX_VERSION} characters",
        ),
    ] = None
    #: the app's options, over its defaults (``modal_template_state``)
    params: Annotated[dict[str, Any], BeforeValidator(_params)] = Field(default_factory=dict)
    #: what the app works on: one target name and its value, ``{images_project: 7}``
    target: Annotated[dict[str, Any] | None, BeforeValidator(_target)] = None
    #: an agent id, or ``any`` online agent of the team
    agent: Annotated[int | Literal["any"], BeforeValidator(_agent)] = AGENT_ANY
    needs: Annotated[list[str], BeforeValidator(_needs)] = Field(default_factory=list)
    when: Annotated[When, BeforeValidator(_one_of(When))] = When.ALL_SUCCESS
    retries: Annotated[RetryPolicy | None, BeforeValidator(_object)] = None
    #: seconds an attempt may run; past it, it is stopped and ends as a timeout
    timeout_s: Annotated[
        float | None,
        _checked(
            lambda v: _is_number(v) and 0 < v <= MAX_TIMEOUT_S,
            f"must be a number of seconds above 0, at most {MAX_TIMEOUT_S:g}",
        ),
    ] = None
    #: true: a failure of this step does not fail the run, and ``all_success`` steps after
    #: it run as if it had finished
    continue_on_failure: Annotated[
        bool, _checked(lambda v: isinstance(v, bool), "must be true or false")
    ] = False
    #: run the step once per item: a list, or one expression that gives one
    for_each: Annotated[str | list[Any] | None, BeforeValidator(_for_each)] = None
    #: most items of a ``for_each`` running at once; None: no limit but the agents' slots
    max_parallel: Annotated[
        int | None,
        _checked(
            lambda v: _is_whole(v) and 1 <= v <= MAX_PARALLEL,
            f"must be a whole number from 1 to {MAX_PARALLEL}",
        ),
    ] = None

    def rule(self) -> StepRule:
        """What the planner needs of this step."""
        return StepRule(tuple(self.needs), self.when, self.continue_on_failure)


def _inputs(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _fail("must be an object: input name → {default: ..., description: ...}")
    if len(value) > MAX_INPUTS:
        raise _fail(f"has {len(value)} inputs; the limit is {MAX_INPUTS}")
    for name in value:
        if not _is_name(name):
            raise _fail(f"is not an input name: use {_NAME_RULE}", at=str(name))
    return value


def _steps(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise _fail("must be a non-empty list of steps")
    if len(value) > MAX_STEPS:
        raise _fail(f"has {len(value)} steps; the limit is {MAX_STEPS}")
    return value


class PipelineDoc(_Doc):
    """A pipeline document. Parse with :meth:`parse`, which reports every problem of its
    shape; then ``check_pipeline`` for the graph, the expressions and the catalog."""

    name: Annotated[
        str,
        _checked(
            lambda v: isinstance(v, str) and len(v) <= MAX_NAME and NAME_RE.match(v) is not None,
            f"must be 1 to {MAX_NAME} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        ),
    ]
    description: Annotated[str | None, _text(MAX_DESCRIPTION)] = None
    inputs: Annotated[dict[str, InputSpec], BeforeValidator(_inputs)] = Field(default_factory=dict)
    steps: Annotated[list[Step], BeforeValidator(_steps)]

    @classmethod
    def parse(cls, raw: Any) -> PipelineDoc:
        """The document of a JSON value (or of YAML/JSON text); a :class:`BadRequestError`
        (422) lists every problem, its ``field`` the first one's location."""
        if isinstance(raw, str | bytes):
            raw = load_document(raw)
        doc, problems = parse_problems(raw)
        if doc is None:
            raise refusal(problems)
        return doc

    def step(self, step_id: str) -> Step:
        """The step of id ``step_id`` (KeyError when there is none)."""
        return self.steps[self.position(step_id)]

    def position(self, step_id: str) -> int:
        """Where the step of id ``step_id`` is in ``steps`` (KeyError when there is none)."""
        return self._positions[step_id]

    @cached_property
    def _positions(self) -> dict[str, int]:
        """Each step's index by id (the first of an id given twice): the engine and a run's
        reads look steps up for every step they touch, so a look-up must not scan them."""
        found: dict[str, int] = {}
        for i, s in enumerate(self.steps):
            found.setdefault(s.id, i)
        return found

    def rules(self) -> dict[str, StepRule]:
        """Each step's rule by id, in document order (for the planner)."""
        return {s.id: s.rule() for s in self.steps}

    def defaults(self) -> dict[str, Any]:
        """The inputs' defaults, for those that have one."""
        return {k: v.default for k, v in self.inputs.items() if v.has_default}

    def to_document(self) -> dict[str, Any]:
        """The document as JSON values, with what its author wrote (no defaults added)."""
        return self.model_dump(mode="json", exclude_unset=True)


#: the keys each object of the document may have, by where it sits
_KEYS: dict[str, list[str]] = {
    "document": list(PipelineDoc.model_fields),
    "input": list(InputSpec.model_fields),
    "step": list(Step.model_fields),
    "retries": list(RetryPolicy.model_fields),
}


def _known_keys(parent: tuple[int | str, ...]) -> list[str]:
    """The keys of the object at ``parent`` (the location of an unknown key, less the key)."""
    if not parent:
        return _KEYS["document"]
    if parent[0] == "inputs":
        return _KEYS["input"]
    return _KEYS["retries"] if parent[-1] == "retries" else _KEYS["step"]


def location(parts: tuple[int | str, ...] | list[int | str]) -> str:
    """``("steps", 1, "params", "x")`` as ``steps[1].params.x``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif str(p).startswith("["):
            out += str(p)
        else:
            out = f"{out}.{p}" if out else str(p)
    return out


def _problems_of(e: ValidationError) -> list[Problem]:
    out: list[Problem] = []
    for err in e.errors(include_url=False):
        loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        parts: list[int | str] = list(loc)
        if ctx.get("at"):
            parts.append(str(ctx["at"]))
        if err["type"] == "pipeline":
            reason = str(ctx["problem"])
        elif err["type"] == "extra_forbidden":
            reason = f"is not a known key; use {_known_keys(loc[:-1])}"
        elif err["type"] == "missing":
            reason = "is required"
        else:
            reason = err["msg"]
        out.append(Problem(location(parts), reason))
    return out


@dataclass(frozen=True)
class _Key:
    """A key that is not a plain string, met where it stands in the document."""

    problem: str


def json_problems(value: Any, at: str = "") -> list[Problem]:
    """What keeps a value from being plain JSON that any database stores: keys that are not
    strings, dates and other YAML types, Infinity and NaN, NUL characters, too deep nesting."""
    out: list[Problem] = []
    stack: list[tuple[Any, str, int]] = [(value, at, 1)]
    while stack and len(out) < MAX_LISTED_PROBLEMS:
        item, where, depth = stack.pop()
        if isinstance(item, dict | list) and depth > MAX_DOCUMENT_DEPTH:
            out.append(Problem(where, f"is nested deeper than {MAX_DOCUMENT_DEPTH} levels"))
            continue
        if isinstance(item, _Key):
            out.append(Problem(where, item.problem))
        elif isinstance(item, dict):
            for k, v in reversed(list(item.items())):
                if not isinstance(k, str):
                    stack.append(
                        (_Key(f"has the key {k!r}, which is not a string; quote it"), where, 0)
                    )
                elif "\x00" in k:
                    stack.append((_Key("has a key with a NUL character"), where, 0))
                else:
                    stack.append((v, f"{where}.{k}" if where else k, depth + 1))
        elif isinstance(item, list):
            stack.extend(
                (v, f"{where}[{i}]", depth + 1) for i, v in reversed(list(enumerate(item)))
            )
        elif isinstance(item, str):
            if "\x00" in item:
                out.append(Problem(where, "has a NUL character, which no database stores"))
        elif isinstance(item, float):
            if not math.isfinite(item):
                out.append(Problem(where, f"is {item}, which JSON has no place for"))
        elif isinstance(item, date):
            out.append(Problem(where, f"is a date ({item}); quote it to pass it as text"))
        elif not (item is None or isinstance(item, bool | int)):
            out.append(Problem(where, f"is a {type(item).__name__}, which JSON has not; quote it"))
    return out


def parse_problems(raw: Any) -> tuple[PipelineDoc | None, list[Problem]]:
    """The document and no problem, or None and every problem of its shape."""
    if not isinstance(raw, dict):
        return None, [Problem("", "a pipeline must be an object with name, inputs and steps")]
    problems = json_problems(raw)
    if problems:
        return None, problems
    size = json_size(raw)
    if size > MAX_DOCUMENT_BYTES:
        return None, [
            Problem("", f"is {size} bytes of JSON; the limit is {MAX_DOCUMENT_BYTES} bytes")
        ]
    try:
        return PipelineDoc.model_validate(raw), []
    except ValidationError as e:
        return None, _problems_of(e)


def refusal(problems: list[Problem]) -> BadRequestError:
    """The 422 of a document with problems: its message lists them, ``field`` is the first
    one's location, ``details.problems`` every one (up to a cap) as ``{at, reason}``."""
    listed = problems[:MAX_LISTED_PROBLEMS]
    more = len(problems) - len(listed)
    lines = "; ".join(str(p) for p in listed)
    if more:
        lines += f"; and {more} more"
    count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
    return BadRequestError(
        f"the pipeline has {count}: {lines}",
        field=problems[0].at if problems else None,
        details={"problems": [p.as_dict() for p in listed]},
    )


class _Loader(yaml.SafeLoader):
    """The safe loader with no aliases, no key twice, and a nesting cap (checked as the
    document is read, before it can blow up into memory or the interpreter's stack)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (*name) are not supported; write it out", mark
            )
        self._depth += 1
        try:
            if self._depth > MAX_DOCUMENT_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"is nested deeper than {MAX_DOCUMENT_DEPTH} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                twice = key in seen
                seen.add(key)
            except TypeError:
                continue  # not hashable: the base refuses it with its own message
            if twice:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON; write a finite number (or a string)")


def _no_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the key {k!r} appears twice")
        out[k] = v
    return out


def load_document(text: str | bytes, *, format: Literal["yaml", "json"] | None = None) -> Any:
    """The JSON value of a YAML or JSON text (JSON when it starts with ``{``, unless
    ``format`` says); a 422 on ``document`` says why it cannot be read, with the line."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_DOCUMENT_BYTES:
        raise BadRequestError(
            f"the pipeline document is {size} bytes; the limit is {MAX_DOCUMENT_BYTES}",
            field="document",
        )
    try:
        source = text.decode() if isinstance(text, bytes) else text
    except UnicodeDecodeError as e:
        raise BadRequestError(
            f"the pipeline document is not UTF-8: {e}", field="document"
        ) from None
    kind = format or ("json" if source.lstrip().startswith("{") else "yaml")
    try:
        if kind == "json":
            return json.loads(source, parse_constant=_refuse_constant, object_pairs_hook=_no_twice)
        loader = _Loader(source)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except RecursionError:
        reason = f"it is nested deeper than {MAX_DOCUMENT_DEPTH} levels"
    except (ValueError, yaml.YAMLError) as e:
        reason = str(e)
    raise BadRequestError(
        f"the pipeline document is not valid {kind.upper()}: {reason}", field="document"
    )


def dump_yaml(document: dict[str, Any]) -> str:
    """A document as YAML, keys in the order written (what ``load_document`` reads back)."""
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))

"""The app manifest (``config.json``): one model for the server, the agent and the SDK.

The manifest travels as the JSON its author wrote (the wire never changes: an older server or
agent reads it as a plain object), and every reader parses it with :meth:`Manifest.parse`, so
a rule is written once and the readers cannot drift apart. Keys the model does not declare
(the reference ecosystem's ``icon``, ``docker_image`` options, ``context_menu.context_root``
...) are accepted and kept in ``model_extra``.

Each check fails with the key path and a sentence for the app's author
(``config.json: slug must be "owner/name" ...``): :class:`ManifestError` carries both, and the
server turns it into a 422 naming ``config.<key>``.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import threading
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from appyard.errors import ManifestError

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: caps of the manifest's fields (docs/security.md): longer is refused, naming the key
MAX_NAME = 200
MAX_SLUG = 200
MAX_TEXT = 5000  # description, entrypoint, version, docker_image, an option's title and help
MAX_PATH = 1024  # main_script, a requirements file's path
MAX_CATEGORIES = 50
MAX_CATEGORY = 100
MAX_REQUIREMENTS = 1000  # lines
MAX_REQUIREMENT = 1000  # characters of one line
MAX_STATE_BYTES = 256 * 1024  # modal_template_state as JSON (as a start's params)
MAX_GRACE_S = 3600.0
DEFAULT_GRACE_S = 10.0
#: a task's stored log (docs/apps.md, "Logs"): the default, and the range ``log_limit`` may ask
#: for (the server may hold it lower: ``APPYARD_MAX_LOG_LINES``/``APPYARD_MAX_LOG_BYTES``)
DEFAULT_LOG_LINES = 100_000
DEFAULT_LOG_BYTES = 64 * 1024 * 1024
MIN_LOG_LINES = 1000
MIN_LOG_BYTES = 1024 * 1024
MAX_LOG_LINES = 1_000_000
MAX_LOG_BYTES = 1024 * 1024 * 1024
OPTION_KEYS = frozenset({"title", "help", "choices"})
SANDBOX_KEYS = frozenset({"network", "read_only_paths", "gpu"})
MAX_READ_ONLY_PATHS = 32


def _fail(problem: str, at: str = "") -> PydanticCustomError:
    """A manifest error: ``problem`` is the sentence, ``at`` the key path below the field."""
    return PydanticCustomError("manifest", "{problem}", {"problem": problem, "at": at})


def _object_of(data: Any, keys: Iterable[str], shape: str) -> Any:
    """A manifest sub-object: a JSON object of known keys only (one message for each kind)."""
    if not isinstance(data, dict):
        raise _fail(f"must be a JSON object with {shape}")
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise _fail(f"is not known; use {sorted(keys)}", at=unknown[0])
    return data


def _checked(ok: Callable[[Any], bool], problem: str) -> BeforeValidator:
    """Check the raw JSON value before Pydantic sees it, so the author reads our sentence
    (and nothing is coerced: ``"5"`` is not a number, ``1`` is not ``true``)."""

    def check(value: Any) -> Any:
        if not ok(value):
            raise _fail(problem)
        return value

    return BeforeValidator(check)


def _json_bytes(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (what a start's params are measured in)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _inside(path: str) -> bool:
    """A relative path that cannot climb out of the app folder."""
    return not path.startswith("/") and ".." not in path.split("/")


def json_kind(value: Any) -> str:
    """The JSON type name of a value, as messages name it (``bool`` is not a number)."""
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


def _short_text(limit: int) -> Callable[[Any], bool]:
    """A string of at most ``limit`` characters without a NUL (which no database stores)."""
    return lambda v: isinstance(v, str) and len(v) <= limit and "\x00" not in v


Text = Annotated[
    str | None,
    # before-validators run last-declared first: the cap is checked once it is a string
    _checked(
        lambda v: not isinstance(v, str) or _short_text(MAX_TEXT)(v),
        f"must be at most {MAX_TEXT} characters, without NUL",
    ),
    _checked(lambda v: isinstance(v, str), "must be a string"),
]
Flag = Annotated[bool, _checked(lambda v: isinstance(v, bool), "must be true or false")]


def _main_script(value: Any) -> Any:
    if not isinstance(value, str):
        raise _fail("must be a string")
    if not _short_text(MAX_PATH)(value):
        raise _fail(f"must be at most {MAX_PATH} characters, without NUL")
    if not _inside(value):
        raise _fail("must be a path inside the app folder")
    return value


def _requirements(value: Any) -> Any:
    problem = "must be a list of requirement lines, or the path of a file in the app folder"
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        if len(value) > MAX_REQUIREMENTS or not all(
            _short_text(MAX_REQUIREMENT)(line) for line in value
        ):
            raise _fail(
                f"must be at most {MAX_REQUIREMENTS} lines of at most {MAX_REQUIREMENT} "
                "characters, without NUL"
            )
        return value
    if isinstance(value, str) and _short_text(MAX_PATH)(value) and _inside(value.strip()):
        return value
    raise _fail(problem)


def _targets(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return value
    raise _fail("must be a list of target names")


class OptionSpec(BaseModel):
    """``modal_template_options.<key>``: how the run dialog shows one option."""

    model_config = ConfigDict(frozen=True)

    title: Text = None
    help: Text = None
    #: the values a start may pick from (checked against the option's default by ``Manifest``)
    choices: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        return _object_of(data, OPTION_KEYS, '"title", "help" and/or "choices"')


def _read_only_paths(value: Any) -> Any:
    if (
        not isinstance(value, list)
        or len(value) > MAX_READ_ONLY_PATHS
        or not all(
            isinstance(p, str)
            and _short_text(MAX_PATH)(p)
            and p.startswith("/")
            and ".." not in p.split("/")
            for p in value
        )
    ):
        raise _fail(
            f"must be a list of at most {MAX_READ_ONLY_PATHS} absolute paths "
            f"(at most {MAX_PATH} characters, no '..')"
        )
    return value


class SandboxSpec(BaseModel):
    """``sandbox``: what the app needs beyond its sandbox (docs/apps.md); the agent enforces
    it, and gives a path only when it allows apps to read it."""

    model_config = ConfigDict(frozen=True)

    #: false: no network but a loopback of its own (the server cannot be reached either)
    network: Flag = True
    #: folders or files of the agent's machine to read (each one the agent allows)
    read_only_paths: Annotated[list[str], BeforeValidator(_read_only_paths)] = Field(
        default_factory=list
    )
    #: the machine's GPU devices
    gpu: Flag = False

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        return _object_of(data, SANDBOX_KEYS, '"network", "read_only_paths" and/or "gpu"')


class ContextMenu(BaseModel):
    """``context_menu``: where the app is started from; other keys of it are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    #: target names (``images_project``, ``ecosystem``, ...); a single string means a list of one
    target: Annotated[list[str], BeforeValidator(_targets)] = Field(default_factory=list)


def _whole(low: int, high: int, unit: str) -> BeforeValidator:
    """A whole number of ``unit`` from ``low`` to ``high`` (``true`` is not one)."""
    return _checked(
        lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high,
        f"must be a whole number of {unit} from {low} to {high}",
    )


class LogLimit(BaseModel):
    """``log_limit``: how much of a task's output the server stores (the rest stays in the
    task folder on the agent); a key left out keeps its default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lines: Annotated[int, _whole(MIN_LOG_LINES, MAX_LOG_LINES, "lines")] = DEFAULT_LOG_LINES
    bytes: Annotated[int, _whole(MIN_LOG_BYTES, MAX_LOG_BYTES, "bytes")] = DEFAULT_LOG_BYTES

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise _fail('must be a JSON object with "lines" and/or "bytes"')
        unknown = sorted(set(data) - {"lines", "bytes"})
        if unknown:
            raise _fail('is not known; use "lines" and/or "bytes"', at=unknown[0])
        return data


#: caps of what an app may ask of its agent's machine (``resources``)
MAX_GPUS_ASKED = 64
MAX_MEMORY_MB = 64 * 1024 * 1024  # 64 TiB
MAX_CPUS_ASKED = 4096
MAX_LABELS = 32
MAX_LABEL = 100
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,99}$")
AMOUNT_KEYS = ("gpus", "gpu_memory_mb", "memory_mb", "cpus")
RESOURCE_KEYS = frozenset({*AMOUNT_KEYS, "agent_labels", "max"})


def check_labels(value: Any) -> dict[str, str]:
    """``{"key": "value"}``: at most ``MAX_LABELS``, keys like ``gpu-type`` or ``zone``."""
    if not isinstance(value, dict):
        raise _fail('must be a JSON object of labels, e.g. {"gpu": "a100"}')
    if len(value) > MAX_LABELS:
        raise _fail(f"must have at most {MAX_LABELS} labels")
    for k, v in value.items():
        if not LABEL_KEY_RE.match(k):
            raise _fail(
                "keys must be letters, digits, '_', '.', '-' or '/' (at most "
                f"{MAX_LABEL} characters, starting with a letter or digit)",
                at=k,
            )
        if not isinstance(v, str) or not _short_text(MAX_LABEL)(v):
            raise _fail(f"must be a string of at most {MAX_LABEL} characters", at=k)
    return value


class ResourceAmounts(BaseModel):
    """How much of its agent's machine a session needs; 0 (or left out): nothing asked."""

    model_config = ConfigDict(frozen=True)

    gpus: Annotated[int, _whole(0, MAX_GPUS_ASKED, "GPUs")] = 0
    #: memory each of its GPUs must have
    gpu_memory_mb: Annotated[int, _whole(0, MAX_MEMORY_MB, "MB")] = 0
    #: resident memory of all its processes; more stops it (``memory limit ... exceeded``)
    memory_mb: Annotated[int, _whole(0, MAX_MEMORY_MB, "MB")] = 0
    cpus: Annotated[
        float,
        _checked(
            lambda v: _is_number(v) and 0 <= v <= MAX_CPUS_ASKED,
            f"must be a number of CPUs from 0 to {MAX_CPUS_ASKED}",
        ),
    ] = 0

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        return _object_of(data, AMOUNT_KEYS, f"some of {list(AMOUNT_KEYS)}")

    def asks(self) -> bool:
        return any(getattr(self, k) for k in AMOUNT_KEYS)


class ResourceSpec(ResourceAmounts):
    """``resources``: what a session of the app needs of its agent's machine (placement
    finds an agent that has it free; docs/apps.md), the labels its agent must carry, and how
    far a start may raise each amount (``max``; without it, only lower)."""

    agent_labels: Annotated[dict[str, str], BeforeValidator(check_labels)] = Field(
        default_factory=dict
    )
    max: ResourceAmounts | None = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        return _object_of(data, RESOURCE_KEYS, f"some of {sorted(RESOURCE_KEYS)}")

    @model_validator(mode="after")
    def _max_above(self) -> ResourceSpec:
        if self.max is not None:
            for key in AMOUNT_KEYS:
                if key in self.max.model_fields_set and getattr(self.max, key) < getattr(self, key):
                    raise _fail(
                        f"must be at least resources.{key} ({getattr(self, key):g})",
                        at=f"max.{key}",
                    )
        return self

    def limit(self, key: str) -> float:
        """The most a start may ask of ``key``."""
        if self.max is not None and key in self.max.model_fields_set:
            return float(getattr(self.max, key))
        return float(getattr(self, key))

    def asks(self) -> bool:
        return super().asks() or bool(self.agent_labels)


class Manifest(BaseModel):
    """An app's ``config.json``. Parse with :meth:`parse`, which raises :class:`ManifestError`.

    Fields are declared in the order they are checked, so the first problem reported is the
    one an author meets first. Undeclared keys are allowed and kept (``model_extra``).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[
        str,
        # before-validators run last-declared first: the cap is checked once it is a string
        _checked(
            lambda v: not isinstance(v, str) or _short_text(MAX_NAME)(v),
            f"must be at most {MAX_NAME} characters, without NUL",
        ),
        _checked(
            lambda v: isinstance(v, str) and bool(v.strip()),
            "is missing; give the app a human-readable name",
        ),
    ] = Field("", validate_default=True)
    #: ``owner/name``: the module the release belongs to
    slug: Annotated[
        str,
        _checked(lambda v: len(v) <= MAX_SLUG, f"must be at most {MAX_SLUG} characters"),
        _checked(
            lambda v: isinstance(v, str) and SLUG_RE.match(v) is not None,
            'must be "owner/name" (letters, digits, ".", "_", "-")',
        ),
    ] = Field("", validate_default=True)
    #: a file of the app folder: run with the app's Python when it ends in ``.py``, else executed
    main_script: Annotated[str | None, BeforeValidator(_main_script)] = None
    #: a command line (split like a shell would, never run by one); wins over ``main_script``
    entrypoint: Text = None
    description: Text = None
    #: the release's version; without it releases are numbered r1, r2, ...
    version: Text = None
    docker_image: Text = None
    #: the options' defaults: what a start's ``params.state`` is checked against
    modal_template_state: Annotated[
        dict[str, Any],
        _checked(
            lambda v: _json_bytes(v) <= MAX_STATE_BYTES,
            f"must take at most {MAX_STATE_BYTES} bytes as JSON",
        ),
        _checked(lambda v: isinstance(v, dict), "must be a JSON object of option defaults"),
    ] = Field(default_factory=dict)
    modal_template_options: Annotated[
        dict[str, OptionSpec],
        _checked(
            lambda v: isinstance(v, dict),
            'must be a JSON object: option key → {"title": ..., "help": ..., "choices": [...]}',
        ),
    ] = Field(default_factory=dict)
    categories: Annotated[
        list[str],
        _checked(
            lambda v: (
                len(v) <= MAX_CATEGORIES
                and all(len(c) <= MAX_CATEGORY and "\x00" not in c for c in v)
            ),
            f"must be at most {MAX_CATEGORIES} strings of at most {MAX_CATEGORY} characters, "
            "without NUL",
        ),
        _checked(
            lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
            "must be a list of strings",
        ),
    ] = Field(default_factory=list)
    #: true: the app has no UI of its own
    headless: Flag = False
    #: seconds between SIGTERM and SIGKILL when the app is stopped
    stop_grace_s: Annotated[
        float,
        _checked(
            lambda v: _is_number(v) and 0 <= v <= MAX_GRACE_S,
            f"must be a number of seconds from 0 to {MAX_GRACE_S:g}",
        ),
    ] = DEFAULT_GRACE_S
    context_menu: Annotated[
        ContextMenu | None,
        _checked(lambda v: isinstance(v, dict), "must be a JSON object with a target list"),
    ] = None
    #: requirement lines, or the path of a requirements file; else ``requirements.txt`` if any
    requirements: Annotated[list[str] | str | None, BeforeValidator(_requirements)] = None
    #: what the app needs beyond its sandbox: network, extra read-only paths, GPUs
    sandbox: SandboxSpec | None = None
    #: how much of a task's log the server stores (lines and bytes of the agent's log file)
    log_limit: LogLimit = Field(default_factory=LogLimit)
    #: what a session needs of its agent's machine: GPUs, memory, CPUs, agent labels
    resources: ResourceSpec | None = None

    _words: tuple[str, ...] | None = PrivateAttr(None)

    @field_validator("modal_template_options", mode="before")
    @classmethod
    def _options_fit_defaults(cls, options: Any, info: ValidationInfo) -> Any:
        """Every option described is an option of ``modal_template_state``, and its choices
        are distinct values of its default's type, the default among them."""
        defaults = info.data.get("modal_template_state")
        if not isinstance(options, dict) or defaults is None:
            return options  # the shape check of the field reports it (or the defaults' own)
        for key, spec in options.items():
            if key not in defaults:
                raise _fail(
                    f"describes no option: modal_template_state has no key {key!r} "
                    f"(its keys: {sorted(defaults)})",
                    at=key,
                )
            if isinstance(spec, dict) and "choices" in spec:
                _check_choices(f"{key}.choices", spec["choices"], key, defaults[key])
        return options

    @model_validator(mode="after")
    def _runnable(self) -> Manifest:
        """Something to run: ``main_script`` or an ``entrypoint`` that splits into words."""
        if not (self.main_script or "").strip() and not (self.entrypoint or "").strip():
            raise _fail(
                "or entrypoint is needed: the script or command that runs the app",
                at="main_script",
            )
        if self.entrypoint is not None and self.entrypoint.strip():
            try:
                self._words = tuple(shlex.split(self.entrypoint))
            except ValueError as e:
                raise _fail(f"cannot be split into words: {e}", at="entrypoint") from None
        return self

    @classmethod
    def parse(cls, raw: Any) -> Manifest:
        """The manifest of a ``config.json`` object; :class:`ManifestError` names the first
        key that breaks a rule and says what is expected."""
        if not isinstance(raw, dict):
            raise ManifestError("config.json must hold a JSON object", field=None)
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise _manifest_error(e) from None

    @property
    def command_words(self) -> tuple[str, ...] | None:
        """``entrypoint`` split into words (split once, at parse); None without one."""
        return self._words

    @property
    def targets(self) -> list[str]:
        """The targets of ``context_menu.target``, in manifest order (``ecosystem`` included)."""
        return list(self.context_menu.target) if self.context_menu is not None else []

    def option_choices(self, key: str) -> list[Any] | None:
        """The choices listed for option ``key``, if any."""
        spec = self.modal_template_options.get(key)
        return spec.choices if spec is not None else None


def _check_choices(at: str, choices: Any, key: str, default: Any) -> None:
    want = json_kind(default)
    if want not in ("string", "number", "boolean"):
        raise _fail(
            f"need an option whose default is a string, number or boolean; "
            f"modal_template_state.{key} is {want} {default!r}",
            at=at,
        )
    if not isinstance(choices, list) or not choices:
        raise _fail(f"must be a non-empty list of {want}s (the values to pick from)", at=at)
    for i, choice in enumerate(choices):
        got = json_kind(choice)
        if got != want:
            raise _fail(
                f"must all be {want}s like the default {default!r}; item {i} is {got} {choice!r}",
                at=at,
            )
        if isinstance(choice, float) and not math.isfinite(choice):
            raise _fail(f"must be finite numbers; item {i} is {choice!r}", at=at)
        if choice in choices[:i]:
            raise _fail(f"lists {choice!r} twice", at=at)
    if default not in choices:
        raise _fail(
            f"must include the default {default!r} of modal_template_state.{key}; got {choices!r}",
            at=at,
        )


def _manifest_error(e: ValidationError) -> ManifestError:
    """The first problem Pydantic found, as ``config.json: <key path> <problem>``."""
    first = e.errors(include_url=False)[0]
    ctx = first.get("ctx") or {}
    parts = [str(p) for p in first["loc"]]
    if ctx.get("at"):
        parts.append(str(ctx["at"]))
    field = ".".join(parts)
    problem = str(ctx["problem"]) if first["type"] == "manifest" else first["msg"]
    return ManifestError(f"config.json: {field} {problem}", field=field)


class ManifestCache:
    """Parsed manifests by release sha256: a release never changes, so it is parsed once,
    not on every start or task. Bounded; a full cache starts over."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._parsed: dict[str, Manifest] = {}
        self._lock = threading.Lock()

    def get(self, sha256: str, raw: Any) -> Manifest:
        """The manifest of release ``sha256`` (whose ``config.json`` object is ``raw``)."""
        found = self._parsed.get(sha256)
        if found is not None:
            return found
        manifest = Manifest.parse(raw)
        with self._lock:
            if len(self._parsed) >= self._size:
                self._parsed.clear()
            self._parsed[sha256] = manifest
        return manifest

"""The push contract: every notifier key a service emits is one a route follows.

Services (``server/services/``) emit keys and routes (``server/routes/``) follow them, both
through ``server/keys.py``: a kind emitted that no route follows (or followed that nothing
emits) is a waiter sleeping until its timeout, so it fails here, read from the source itself.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import get_type_hints

from appyard.domain.status import Status
from appyard.server import keys, notifier
from appyard.server.keys import Key

SERVER = Path(keys.__file__).parent


def _kinds() -> dict[str, Callable[..., Key]]:
    """The constructors of ``keys``: its functions that answer a ``Key``."""
    return {
        name: fn
        for name, fn in inspect.getmembers(keys, inspect.isfunction)
        if fn.__module__ == keys.__name__ and get_type_hints(fn).get("return") is Key
    }


def _samples() -> dict[str, list[Key]]:
    """Each kind's keys for a few ids (and every status): what it can build."""
    out: dict[str, list[Key]] = {}
    for name, fn in _kinds().items():
        params = list(inspect.signature(fn).parameters)
        built: list[Key] = []
        for n in (1, 7, 42):
            if not params:  # one key for the whole server (the pipeline engine's)
                built.append(fn())
            elif params == ["task_id", "status"]:
                built += [keys.task_status(n, st) for st in Status]
            else:
                assert len(params) == 1, (
                    f"keys.{name}{params}: none, an id, or a task id and a status"
                )
                built.append(fn(n))
        out[name] = built
    return out


def _uses(folder: Path) -> dict[str, set[str]]:
    """The kinds each module of ``folder`` builds: ``keys.<kind>`` through the imported module,
    or a kind imported by name from it."""
    kinds = set(_kinds())
    out: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        modules: set[str] = set()  # local names of the keys module
        direct: dict[str, str] = {}  # local name -> kind
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "appyard.server":
                modules |= {a.asname or a.name for a in node.names if a.name == "keys"}
            elif isinstance(node, ast.ImportFrom) and node.module == "appyard.server.keys":
                direct |= {a.asname or a.name: a.name for a in node.names if a.name in kinds}
        used: set[str] = set()
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and node.attr in kinds
            ):
                used.add(node.attr)
            elif isinstance(node, ast.Name) and node.id in direct:
                used.add(direct[node.id])
        if used:
            out[str(path.relative_to(SERVER))] = used
    return out


def test_every_kind_emitted_is_followed_and_the_other_way_round() -> None:
    emitters = _uses(SERVER / "services")
    followers = _uses(SERVER / "routes")
    emitted = set().union(*emitters.values())
    followed = set().union(*followers.values())
    assert emitted - followed == set(), (
        f"emitted but no route follows them (a wake nobody waits for): {emitted - followed}; "
        f"emitters: {emitters}"
    )
    assert followed - emitted == set(), (
        f"followed but no service emits them (a waiter sleeps until its timeout): "
        f"{followed - emitted}; followers: {followers}"
    )
    assert set(_kinds()) == emitted, f"kinds nothing uses: {set(_kinds()) - emitted}"


def test_no_key_is_built_outside_the_keys_module() -> None:
    """No ``Key(...)`` and no string shaped like a key (``"task:"``, ``f"queue:{...}"``)
    anywhere else in the server: a hand-built key would bypass the check above."""
    prefixes = {key.split(":", 1)[0] + ":" for built in _samples().values() for key in built}
    found: list[str] = []
    for path in sorted(SERVER.rglob("*.py")):
        if path == SERVER / "keys.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(SERVER)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and (
                (isinstance(node.func, ast.Name) and node.func.id == "Key")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "Key")
            ):
                found.append(f"{where} calls Key()")
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            elif isinstance(node, ast.JoinedStr) and node.values:
                first = node.values[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    text = first.value
            if text is not None and any(text.startswith(p) for p in prefixes):
                found.append(f"{where} writes {text!r}")
    assert found == [], found


def test_kinds_never_collide_and_only_queue_keys_wake_one_at_a_time() -> None:
    samples = _samples()
    owner: dict[Key, str] = {}
    for name, built in samples.items():
        for key in built:
            assert owner.setdefault(key, name) == name, f"{key!r}: {owner[key]} and {name}"
            one_at_a_time = key.startswith(notifier.ONE_AT_A_TIME)
            assert one_at_a_time == (name == "queue"), f"{name} builds {key!r}"
    # what a wait subscribes to is not what a watch does: each status wakes only its own waits
    assert keys.task_status(42, Status.FINISHED) != keys.task(42)
    assert len({keys.task_status(42, st) for st in Status}) == len(Status)

"""``AsyncApi`` has the whole surface of ``Api``: every resource, every public method with the
same parameters, so the two twins cannot drift apart. No server needed: the surfaces are read
from the classes and from one instance of each (making one opens no connection)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from appyard.sdk import Api, AsyncApi

#: the only names that differ between the twins, as in httpx: ``close`` is ``aclose``
RENAMED = {"close": "aclose"}


def _resources() -> dict[str, tuple[type, type]]:
    """Public attribute name -> (sync resource class, async resource class)."""
    sync_api, async_api = Api("h:1", "t"), AsyncApi("h:1", "t")
    try:
        sync = {k: type(v) for k, v in vars(sync_api).items() if not k.startswith("_")}
        asynchronous = {k: type(v) for k, v in vars(async_api).items() if not k.startswith("_")}
    finally:
        sync_api.close()
        asyncio.run(async_api.aclose())
    assert sync.keys() == asynchronous.keys(), "Api and AsyncApi have different resources"
    return {name: (sync[name], asynchronous[name]) for name in sync}


RESOURCES = _resources()
PAIRS = [(Api, AsyncApi), *RESOURCES.values()]


def _public(cls: type) -> dict[str, Any]:
    """Public members as stored on the class (a property, a classmethod, a function...)."""
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[:-1]):  # object's members are nobody's surface
        members.update((k, v) for k, v in vars(klass).items() if not k.startswith("_"))
    return members


def _shape(fn: Callable[..., Any]) -> str:
    """What a method hands back: a value, an iterator, or a context manager."""
    if hasattr(fn, "__wrapped__"):
        return "context manager"
    returns = str(inspect.signature(fn).return_annotation)
    return "iterator" if returns.startswith(("Iterator[", "AsyncIterator[")) else "value"


def _params(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    return [
        (p.name, p.kind, p.default, p.annotation) for p in inspect.signature(fn).parameters.values()
    ]


def test_every_resource_of_api_is_on_async_api() -> None:
    assert sorted(RESOURCES) == [
        "agent",
        "annotation",
        "app",
        "dataset",
        "file",
        "image",
        "module",
        "pipeline",
        "project",
        "task",
        "team",
        "user",
        "workspace",
    ]
    for name, (sync_cls, async_cls) in RESOURCES.items():
        assert sync_cls is not async_cls, name
        assert async_cls.__name__ == "Async" + sync_cls.__name__, name


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=[s.__name__ for s, _ in PAIRS])
def test_the_twins_have_the_same_members(sync_cls: type, async_cls: type) -> None:
    sync, asynchronous = _public(sync_cls), _public(async_cls)
    assert sorted(RENAMED.get(name, name) for name in sync) == sorted(asynchronous)
    for name, member in sync.items():
        twin = asynchronous[RENAMED.get(name, name)]
        where = f"{sync_cls.__name__}.{name}"
        assert type(member) is type(twin), where  # property, classmethod, function alike
        if isinstance(member, property):
            assert member.fget is not None and twin.fget is not None
            assert _params(member.fget) == _params(twin.fget), where
            continue
        if not inspect.isfunction(getattr(member, "__func__", member)):
            assert member == twin, where  # a class attribute such as ``Status``
            continue
        fn, afn = getattr(member, "__func__", member), getattr(twin, "__func__", twin)
        assert _params(fn) == _params(afn), where
        assert inspect.getdoc(afn) == inspect.getdoc(fn), where
        if isinstance(member, classmethod):
            continue  # a constructor: both build their own kind
        assert _shape(fn) == _shape(afn), where
        assert not inspect.iscoroutinefunction(fn), where
        returns = inspect.signature(fn).return_annotation
        areturns = inspect.signature(afn).return_annotation
        if _shape(fn) == "value":
            assert inspect.iscoroutinefunction(afn), f"{where} is not awaitable in the twin"
            assert areturns == returns, where
        else:
            assert areturns == "Async" + returns, where


def test_the_async_twin_documents_each_call() -> None:
    """Docstrings are written once, on the sync side, and shared with the twin."""
    for sync_cls, async_cls in PAIRS:
        assert async_cls.__doc__, async_cls.__name__
        for name, member in _public(sync_cls).items():
            fn = getattr(member, "__func__", member)
            if inspect.isfunction(fn) and fn.__doc__:
                twin = getattr(async_cls, RENAMED.get(name, name))
                assert inspect.getdoc(twin) == inspect.getdoc(fn), f"{async_cls.__name__}.{name}"

"""The pure core both twins run (``appyard.sdk._calls``): a call is played here effect by
effect, answering each as a core would, so its rules show without any I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from appyard.domain.status import Status
from appyard.errors import NotFoundError, ServerUnavailableError
from appyard.schemas.common import Page
from appyard.sdk._calls import files, tasks
from appyard.sdk._calls.effects import Driver, Emit, Op, Sleep, collect, pages, request
from appyard.sdk._core import RequestSpec
from tests.sdk.test_sdk_rules import task

Answer = Callable[[Any], Any]


def play(op: Op[Any], answer: Answer) -> tuple[Any, list[Any]]:
    """Run ``op`` to its end with ``answer(effect)`` as each effect's result (or error);
    its value and the effects it asked for, in order."""
    driver, asked = Driver(op), []
    while driver.next():
        asked.append(driver.effect)
        try:
            driver.give(answer(driver.effect))
        except Exception as exc:
            driver.fail(exc)
    return driver.value(), asked


def numbers(cursor: str | None) -> Op[Page[int]]:
    data = yield from request("GET", "/numbers", params={"cursor": cursor})
    return Page[int].model_validate(data)


def two_per_page(spec: RequestSpec) -> dict[str, Any]:
    start = int(spec.params.get("cursor", "0"))
    return {"items": [start, start + 1], "next_cursor": str(start + 2)}


def test_a_limit_stops_the_reading_where_it_is_reached() -> None:
    got, asked = play(collect(pages(numbers), limit=3), two_per_page)
    assert got == [0, 1, 2]
    assert [spec.params for spec in asked] == [{}, {"cursor": "2"}]  # no third page
    got, asked = play(collect(pages(numbers), limit=0), two_per_page)
    assert (got, asked) == ([], [])


def test_pages_end_at_an_empty_page_or_no_cursor() -> None:
    def three(spec: RequestSpec) -> dict[str, Any]:
        start = int(spec.params.get("cursor", "0"))
        return {"items": [start], "next_cursor": str(start + 1) if start < 2 else None}

    items = []
    op = pages(numbers)
    driver = Driver(op)
    while driver.next():
        if isinstance(driver.effect, Emit):
            items.append(driver.effect.item)
        else:
            driver.give(three(driver.effect))
    assert items == [0, 1, 2]


def test_an_error_is_thrown_into_the_call_which_decides() -> None:
    def missing(field: str) -> Answer:
        def answer(spec: RequestSpec) -> Any:
            raise NotFoundError("not found", field=field)

        return answer

    assert play(files.get_info_by_path(1, "/nope"), missing("path"))[0] is None
    with pytest.raises(NotFoundError):  # the team is not there: not a question of the path
        play(files.get_info_by_path(1, "/nope"), missing("team_id"))


def test_wait_rides_out_a_lost_server_with_a_pause_as_an_effect() -> None:
    answers: list[Any] = [
        ServerUnavailableError("restarting"),
        None,  # the pause
        {"task": task(Status.FINISHED).model_dump(mode="json"), "timed_out": False},
    ]

    def answer(effect: Any) -> Any:
        result = answers.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    status, asked = play(tasks.wait(5, None, None, None, None, 25.0), answer)
    assert status is Status.FINISHED
    assert [type(effect) for effect in asked] == [RequestSpec, Sleep, RequestSpec]
    assert asked[0].path == "/tasks/5/wait" and asked[1] == Sleep(0.1)

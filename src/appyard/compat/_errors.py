"""The error the compatibility layer raises for a reference feature appyard does not have."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from appyard.errors import AppyardError


class NotSupportedError(AppyardError, NotImplementedError):
    """A reference SDK argument or call has no equivalent in appyard; the message says what is
    unsupported and what to do instead (docs/compat.md lists every case)."""


def refused(call: str, why: str) -> Callable[..., NoReturn]:
    """A method of the reference's surface that appyard refuses: it takes any arguments and
    raises ``NotSupportedError("<call> is not supported: <why>")``; ``why`` says what to do."""

    def method(self: object, *args: object, **kwargs: object) -> NoReturn:
        raise NotSupportedError(f"{call} is not supported: {why}")

    method.__name__ = call.rsplit(".", 1)[-1]
    method.__doc__ = f"Refused: {why}"
    return method

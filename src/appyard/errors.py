"""The one exception root of appyard, shared by the server, the agent and the SDK.

::

    AppyardError
    ├── ConfigurationError (ValueError)      the client is not set up: address, token, env file
    ├── InvalidArgumentsError (ValueError)   get_arguments/start called with wrong arguments
    │   └── TargetRequiredError               the app needs a target and none was given
    ├── InvalidTargetError (KeyError)         more than one target, or one the app does not allow
    ├── ManifestError (ValueError)            an app's config.json breaks a rule (key path in ``field``)
    ├── ApiError                              the server refused a request (HTTP 4xx/5xx)
    │   ├── BadRequestError (ValueError)      400/422: a field is missing or wrong
    │   ├── AuthenticationError               401: no token, or a token that is not valid
    │   ├── PermissionDeniedError             403: the token may not do this
    │   ├── NotFoundError (KeyError)          404: no such thing (or not visible to you)
    │   │   └── ModuleNotFoundInEcosystem     get_ecosystem_module_id(slug) found nothing
    │   ├── ConflictError                     409: illegal status transition, duplicate
    │   ├── TooManyRequestsError              429: over a limit; ``retry_after_s`` says when to retry
    │   └── ServerError                       5xx: a bug or an outage on the server
    ├── ServerUnavailableError                the server could not be reached (after retries)
    ├── ServerStartError                      the server cannot start: database driver, connection, schema
    ├── WaitingTimeExceeded                   wait() ran out of its time budget
    └── TaskFinishedWithError                 the task waited for ended in ``error``
        └── PipelineRunFailed                 the pipeline run waited for ended ``error`` or ``stopped``

Every message says what went wrong and what to do about it.
"""

from __future__ import annotations

from typing import Any


class AppyardError(Exception):
    """Root of every error appyard raises on purpose."""


class ConfigurationError(AppyardError, ValueError):
    """The client is missing configuration (server address, token, env file)."""


class InvalidArgumentsError(AppyardError, ValueError):
    """An SDK call got arguments it cannot use."""


class TargetRequiredError(InvalidArgumentsError):
    """The app has to be started from a target and none was given."""


class InvalidTargetError(AppyardError, KeyError):
    """The target given is not one the app accepts (or more than one was given)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep the reference's look
        return repr(self.args[0]) if self.args else ""


class ManifestError(AppyardError, ValueError):
    """An app's ``config.json`` breaks a rule; ``field`` is the key path (None: the whole file).

    The server answers it as a 422 on ``config.<field>``; the agent fails the task with it.
    """

    def __init__(self, message: str, *, field: str | None) -> None:
        super().__init__(message)
        self.field = field


class ApiError(AppyardError):
    """The server refused a request; carries the HTTP status and the JSON error body."""

    status_code: int = 500
    code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status_code: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code
        self.details = details or {}
        #: seconds the server asked the client to wait before trying again (its ``Retry-After``,
        #: on a 429 or a 503 ``busy``); None: it did not say
        self.retry_after_s: float | None = None

    def __str__(self) -> str:
        return self.message

    def to_body(self) -> dict[str, Any]:
        """The JSON error body the server sends (and the SDK parses back)."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadRequestError(ApiError, ValueError):
    status_code = 422
    code = "invalid"


class AuthenticationError(ApiError):
    status_code = 401
    code = "unauthenticated"


class PermissionDeniedError(ApiError):
    status_code = 403
    code = "forbidden"


class NotFoundError(ApiError, KeyError):
    status_code = 404
    code = "not_found"

    def __str__(self) -> str:
        return self.message


class ModuleNotFoundInEcosystem(NotFoundError):
    pass


class ConflictError(ApiError):
    status_code = 409
    code = "conflict"


class TooManyRequestsError(ApiError):
    """429: the server's limit on this (open streams, publishes, sign-ins) was reached."""

    status_code = 429
    code = "too_many_requests"


class ServerError(ApiError):
    status_code = 500
    code = "server_error"


class ServerUnavailableError(AppyardError, ConnectionError):
    """The server could not be reached; check SERVER_ADDRESS and that the server runs."""


class ServerStartError(AppyardError):
    """The server cannot start: its database driver is missing, the database cannot be reached,
    or its schema cannot be brought to this version. The message says which and what to do."""


class WaitingTimeExceeded(AppyardError):
    """``wait`` ran out of its time budget before the task reached the status waited for."""


class TaskFinishedWithError(AppyardError):
    """The task ended with status ``error``; the message carries its error text and log tail."""

    def __init__(self, message: str, *, task_id: int | None = None, error: str | None = None):
        super().__init__(message)
        self.task_id = task_id
        self.error = error


class PipelineRunFailed(TaskFinishedWithError):
    """The pipeline run waited for ended ``error`` or ``stopped``; the message names each step
    that failed, with its error. ``run`` is the run as it ended (a ``RunInfo``), ``status``
    its status; ``task_id`` is the task of the first failed step, when it has one."""

    def __init__(
        self,
        message: str,
        *,
        run_id: int,
        status: str,
        run: Any = None,
        task_id: int | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(message, task_id=task_id, error=error)
        self.run_id = run_id
        self.status = status
        self.run = run


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: TooManyRequestsError,
}


def error_from_response(status_code: int, body: Any) -> ApiError:
    """Rebuild the typed error from a server's JSON error body (used by the SDK)."""
    cls = _BY_STATUS.get(status_code, ServerError if status_code >= 500 else ApiError)
    message = f"HTTP {status_code}"
    field = code = None
    details: dict[str, Any] | None = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        message = str(err.get("message", message))
        field = err.get("field")
        code = err.get("code")
        details = err.get("details")
    elif isinstance(body, dict) and "detail" in body:
        message = str(body["detail"])
    return cls(message, field=field, status_code=status_code, code=code, details=details)

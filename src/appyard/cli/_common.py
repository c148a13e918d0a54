"""What every CLI command shares: the consoles, the client, id options and value parsing."""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

import typer
from dotenv import load_dotenv
from rich.console import Console
from rich.text import Text

from appyard.errors import ConfigurationError, InvalidArgumentsError
from appyard.sdk import Api, env
from appyard.sdk.api import default_env_file

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

TEAM_HELP = "Team id (default: TEAM_ID from the env or ~/appyard.env)."
WORKSPACE_HELP = "Workspace id (default: WORKSPACE_ID from the env or ~/appyard.env)."


def load_env_file() -> None:
    """Load ``~/appyard.env`` (or ``$APPYARD_ENV_FILE``) if it exists; set variables win.

    Done once before any command parses its options, so TEAM_ID and friends saved by
    ``appyard up`` serve as option defaults.
    """
    path = default_env_file()
    if path.is_file():
        load_dotenv(path, override=False)


def get_api() -> Api:
    """The client, configured like the SDK's ``Api.from_env()``."""
    return Api.from_env()


def team_id(option: int | None) -> int:
    """``--team``, else TEAM_ID; a clear error when neither is there."""
    value = option if option is not None else env.team_id(raise_not_found=False)
    if value is None:
        raise ConfigurationError("No team: pass --team ID or set TEAM_ID (`appyard team list`).")
    return value


def workspace_id(option: int | None) -> int:
    value = option if option is not None else env.workspace_id(raise_not_found=False)
    if value is None:
        raise ConfigurationError(
            "No workspace: pass --workspace ID or set WORKSPACE_ID (`appyard workspace list`)."
        )
    return value


def split_pair(raw: str, what: str) -> tuple[str, str]:
    """``key=value`` -> (key, value); the error names the option."""
    key, sep, value = raw.partition("=")
    if not sep or not key.strip():
        raise InvalidArgumentsError(f"{what} must look like key=value, got {raw!r}")
    return key.strip(), value


def parse_value(raw: str, default: Any = None) -> Any:
    """A ``--param`` value: JSON when it parses (3, 0.7, true, [1]), else the text itself.

    When the option's default is a string the text is kept as is, so ``--param name=123``
    stays ``"123"``.
    """
    if isinstance(default, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_short_time(value: datetime | None, now: datetime | None = None) -> str:
    """A local time for narrow columns: ``07:44:15`` today, ``12-03 07:44`` earlier this
    year, ``2025-10-31`` before (at most 11 characters)."""
    if value is None:
        return "-"
    local = value.astimezone()
    today = (now or datetime.now()).astimezone()
    if local.date() == today.date():
        return local.strftime("%H:%M:%S")
    if local.year == today.year:
        return local.strftime("%m-%d %H:%M")
    return local.strftime("%Y-%m-%d")


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def exit_with(message: str, code: int = 1) -> None:
    err_console.print(Text.assemble(("error:", "red"), " ", message), soft_wrap=True)
    raise typer.Exit(code)


def home_dir() -> str:
    return os.environ.get("APPYARD_HOME", "~/.appyard")

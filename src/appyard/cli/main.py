"""The ``appyard`` command: sub-commands are registered here; errors become one red line."""

from __future__ import annotations

import sys

import typer
from rich.text import Text

from appyard import __version__
from appyard.cli._common import err_console, load_env_file
from appyard.cli.accounts_cmd import team_app, token_app, user_app, workspace_app
from appyard.cli.agent_cmd import agent_app
from appyard.cli.app_cmd import app as app_app
from appyard.cli.app_cmd import task_app
from appyard.cli.demo_cmd import demo
from appyard.cli.files_cmd import files_app
from appyard.cli.pipeline_cmd import pipeline_app
from appyard.cli.process_cmd import server, up
from appyard.errors import (
    AppyardError,
    ConfigurationError,
    InvalidArgumentsError,
    InvalidTargetError,
)

cli = typer.Typer(
    name="appyard",
    help="appyard: publish apps and run them as sessions on your own agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"appyard {__version__}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Credentials come from SERVER_ADDRESS / API_TOKEN, else from ~/appyard.env."""
    load_env_file()


cli.add_typer(app_app, name="app")
cli.add_typer(task_app, name="task")
cli.add_typer(agent_app, name="agent")
cli.add_typer(user_app, name="user")
cli.add_typer(token_app, name="token")
cli.add_typer(team_app, name="team")
cli.add_typer(workspace_app, name="workspace")
cli.add_typer(files_app, name="files")
cli.add_typer(pipeline_app, name="pipeline")
cli.command("server")(server)
cli.command("up")(up)
cli.command("demo")(demo)

USAGE_EXIT = 2


def _message(exc: BaseException) -> str:
    if isinstance(exc, InvalidTargetError | KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def _print_error(exc: BaseException) -> None:
    err_console.print(Text.assemble(("error:", "red"), " ", _message(exc)), soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``appyard`` script; SDK errors print as one line, not a traceback."""
    try:
        cli(args=argv, prog_name="appyard")
    except (ConfigurationError, InvalidArgumentsError, InvalidTargetError) as exc:
        _print_error(exc)
        sys.exit(USAGE_EXIT)
    except (AppyardError, FileNotFoundError) as exc:
        _print_error(exc)
        sys.exit(1)

"""``appyard files ...``: the team's files from a terminal (a thin layer over ``api.file``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from appyard.cli._common import TEAM_HELP, console, fmt_short_time, fmt_time, get_api, team_id
from appyard.errors import InvalidArgumentsError
from appyard.schemas.files import FileInfo
from appyard.sdk.file_api import join

files_app = typer.Typer(
    help="Team files: list, upload, download, move, remove.", no_args_is_help=True
)

TeamOption = Annotated[int | None, typer.Option("--team-id", "--team", help=TEAM_HELP)]

#: from this many columns on, ``ls`` shows whole times (else ``07:44:15`` / ``12-03 07:44``)
WIDE_COLUMNS = 100


def _size(info: FileInfo) -> str:
    if info.is_dir:
        return "-"
    value, unit = float(info.size), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{info.size} B" if unit == "B" else f"{value:.1f} {unit}"


@files_app.command("ls")
def ls(
    path: Annotated[str, typer.Argument(help="Team folder.")] = "/",
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Everything below the folder.")
    ] = False,
    team: TeamOption = None,
) -> None:
    """List a folder of the team's files."""
    with get_api() as api:
        entries = api.file.list(team_id(team), path, recursive=recursive)
    wide = console.width >= WIDE_COLUMNS
    table = Table()
    table.add_column("ID", no_wrap=True, justify="right")  # a file's id; a folder has none
    table.add_column("PATH", overflow="fold")  # a long path wraps whole, never cut
    table.add_column("TYPE", no_wrap=True)
    table.add_column("SIZE", no_wrap=True, justify="right")
    table.add_column("MODIFIED", no_wrap=True)
    for e in entries:
        table.add_row(
            "-" if e.id is None else str(e.id),
            e.path + ("/" if e.is_dir else ""),
            "folder" if e.is_dir else "file",
            _size(e),
            fmt_time(e.modified_at) if wide else fmt_short_time(e.modified_at),
        )
    console.print(table)


@files_app.command()
def mv(
    src: Annotated[
        str,
        typer.Argument(
            help="Team file or folder, or a file's id as `ls` shows it (a file named 123: '/123')."
        ),
    ],
    dst: Annotated[
        str, typer.Argument(help="New team path; ending in '/' (or an existing folder): into it.")
    ],
    team: TeamOption = None,
) -> None:
    """Move or rename a file (it keeps its id) or a folder (with all in it); the new path
    must be free."""
    with get_api() as api:
        if src.isdigit():
            info = api.file.get_info_by_id(int(src))
            tid, src_path = info.team_id or team_id(team), info.path
        else:
            tid, src_path = team_id(team), src
        into = dst.endswith("/") or api.file.dir_exists(tid, dst)
        target = join(dst, src_path.rstrip("/").rsplit("/", 1)[-1]) if into else dst
        moved = (
            api.file.move_by_id(int(src), target)
            if src.isdigit()
            else api.file.move(tid, src_path, target)
        )
    what = f" (id {moved.id})" if moved.id is not None else ""
    console.print(f"Moved {src_path} to {moved.path}{what}.")


@files_app.command()
def upload(
    local: Annotated[Path, typer.Argument(help="Local file or folder.")],
    remote: Annotated[
        str, typer.Argument(help="Team path; ending in '/' (or an existing folder): into it.")
    ],
    team: TeamOption = None,
) -> None:
    """Upload a file or a folder (with everything in it)."""
    tid = team_id(team)
    if not local.exists():
        raise InvalidArgumentsError(f"{local} does not exist")
    with get_api() as api:
        into = remote.endswith("/") or api.file.dir_exists(tid, remote)
        target = join(remote, local.resolve().name) if into else join(remote)
        if local.is_dir():
            done = api.file.upload_directory(tid, local, target)
            console.print(f"Uploaded {len(done)} files to {target}.")
        else:
            info = api.file.upload(tid, local, target)
            console.print(f"Uploaded {info.path} ({_size(info)}).")


@files_app.command()
def download(
    remote: Annotated[str, typer.Argument(help="Team file or folder.")],
    local: Annotated[Path, typer.Argument(help="Local path; an existing folder: into it.")] = Path(
        "."
    ),
    team: TeamOption = None,
) -> None:
    """Download a file or a folder (with everything in it)."""
    tid = team_id(team)
    with get_api() as api:
        info = api.file.get_info_by_path(tid, remote)
        if info is None:
            raise InvalidArgumentsError(f"No file or folder {remote!r} in team {tid}'s files")
        name = info.name or f"team-{tid}-files"
        target = local / name if local.is_dir() else local
        if info.is_dir:
            api.file.download_directory(tid, info.path, target)
        else:
            api.file.download(tid, info.path, target)
    console.print(f"Downloaded {info.path} to {target}.")


@files_app.command()
def rm(
    path: Annotated[str, typer.Argument(help="Team file or folder.")],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="A folder with everything in it.")
    ] = False,
    team: TeamOption = None,
) -> None:
    """Remove a file, or a folder (-r when it is not empty)."""
    with get_api() as api:
        api.file.remove(team_id(team), path, recursive=recursive)
    console.print(f"Removed {path}.")


@files_app.command()
def mkdir(
    path: Annotated[str, typer.Argument(help="Team folder (parents are made too).")],
    team: TeamOption = None,
) -> None:
    """Make a folder."""
    with get_api() as api:
        info = api.file.mkdir(team_id(team), path)
    console.print(f"Folder {info.path} is there.")

"""Team paths: the one gate every path of team files goes through, before any disk work.

A team path is absolute within the team's root (``/exports/a.tar``). ``normalize`` refuses
``.``/``..`` segments, NUL and other control characters, backslashes, over-long paths and
names, and names of the server's own temporary files, with a 422 on the field.
"""

from __future__ import annotations

from appyard.errors import BadRequestError

#: longest team path, in characters (as ``FolderCreate.path``)
MAX_PATH_CHARS = 1024
#: longest name of one file or folder, in UTF-8 bytes (what Linux file systems allow)
MAX_NAME_BYTES = 255
#: names starting with this are the server's own temporary files: hidden and refused
RESERVED_PREFIX = ".appyard-"


def _invalid(field: str, raw: str, problem: str) -> BadRequestError:
    shown = raw if len(raw) <= 200 else raw[:200] + "..."
    return BadRequestError(f"{field}: {problem} (got {shown!r})", field=field)


def normalize(raw: object, field: str = "path") -> str:
    """The canonical form of a team path: ``/a/b`` (the root is ``/``), or a 422 on ``field``.

    A leading ``/`` is optional and repeated or trailing slashes are dropped; anything that
    could name a place outside the team's root, or that the disk cannot store, is refused.
    """
    if not isinstance(raw, str):
        raise BadRequestError(f"{field}: must be a string like '/folder/file.txt'", field=field)
    if not raw:
        raise _invalid(field, raw, "is empty; use '/' for the team's root")
    if len(raw) > MAX_PATH_CHARS:
        raise _invalid(field, raw, f"is longer than {MAX_PATH_CHARS} characters")
    if "\\" in raw:
        raise _invalid(field, raw, "contains a backslash; separate folders with '/'")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise _invalid(field, raw, "contains a NUL byte or another control character")
    parts = [part for part in raw.split("/") if part]
    for part in parts:
        if part in (".", ".."):
            raise _invalid(field, raw, f"contains a {part!r} segment; give the path from '/'")
        try:
            size = len(part.encode("utf-8"))
        except UnicodeEncodeError:
            raise _invalid(field, raw, "is not valid Unicode text") from None
        if size > MAX_NAME_BYTES:
            raise _invalid(field, raw, f"has a name longer than {MAX_NAME_BYTES} bytes")
        if part.startswith(RESERVED_PREFIX):
            raise _invalid(
                field, raw, f"names starting with {RESERVED_PREFIX!r} are reserved by the server"
            )
    return "/" + "/".join(parts)


def path_parts(path: str) -> list[str]:
    """The names of a normalized path, outermost first (none for the root)."""
    return [part for part in path.split("/") if part]


def join(folder: str, name: str) -> str:
    """The team path of ``name`` inside ``folder``."""
    return f"{folder.rstrip('/')}/{name}"

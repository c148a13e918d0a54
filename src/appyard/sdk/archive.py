"""Pack an app folder into the release archive ``appyard app publish`` uploads.

The archive is deterministic (sorted names, mtime 0, uid/gid 0, no user names, gzip header
without time or name), so the same content always has the same sha256 and publishing it
again makes no new release.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from appyard.errors import InvalidArgumentsError

MANIFEST = "config.json"
SKIP_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
SKIP_SUFFIXES = (".pyc", ".pyo")
SKIP_NAMES = frozenset({".DS_Store"})


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The app's ``config.json``; a clear error when it is missing, not JSON or has no name."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InvalidArgumentsError(f"{folder} is not a folder: pass the app's folder")
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise InvalidArgumentsError(
            f"{manifest} not found: an app folder needs a {MANIFEST} with at least a 'name'"
        )
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgumentsError(f"{manifest} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgumentsError(
            f"{manifest} must hold a JSON object, not {type(data).__name__}"
        )
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentsError(f'{manifest} has no \'name\': add "name": "My app"')
    return data


def iter_files(folder: Path) -> list[Path]:
    """Paths (relative, sorted) that go into the archive; symlinks are not followed."""
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        base = Path(root)
        for d in dirs:
            if not (base / d).is_symlink():
                out.append((base / d).relative_to(folder))
        for f in sorted(files):
            p = base / f
            if f in SKIP_NAMES or f.endswith(SKIP_SUFFIXES) or p.is_symlink() or not p.is_file():
                continue
            out.append(p.relative_to(folder))
    return sorted(out, key=lambda p: p.as_posix())


def _info(name: str, *, is_dir: bool, size: int = 0, executable: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if is_dir:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o755 if executable else 0o644
    return info


def build_archive(path: str | os.PathLike[str]) -> bytes:
    """The app folder as deterministic ``tar.gz`` bytes (files at the archive's root)."""
    folder = Path(path).expanduser()
    read_manifest(folder)
    raw = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel in iter_files(folder):
            full = folder / rel
            name = rel.as_posix()
            if full.is_dir():
                tar.addfile(_info(name, is_dir=True))
                continue
            data = full.read_bytes()
            executable = os.access(full, os.X_OK)
            tar.addfile(
                _info(name, is_dir=False, size=len(data), executable=executable), io.BytesIO(data)
            )
    return raw.getvalue()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""``supervisely.io.fs``: the file helpers scripts call most, on the standard library."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "archive_directory",
    "clean_dir",
    "copy_file",
    "dir_empty",
    "dir_exists",
    "ensure_base_path",
    "file_exists",
    "get_file_ext",
    "get_file_hash",
    "get_file_name",
    "get_file_name_with_ext",
    "get_file_size",
    "get_subdirs",
    "list_dir_recursively",
    "list_files",
    "list_files_recursively",
    "mkdir",
    "remove_dir",
    "silent_remove",
    "touch",
    "unpack_archive",
]

StrPath = str | os.PathLike[str]


def get_file_name(path: StrPath) -> str:
    """``/a/b/image.png`` -> ``image``."""
    return os.path.splitext(os.path.basename(path))[0]


def get_file_ext(path: StrPath) -> str:
    """``/a/b/image.png`` -> ``.png``."""
    return os.path.splitext(os.fspath(path))[1]


def get_file_name_with_ext(path: StrPath) -> str:
    return os.path.basename(path)


def file_exists(path: StrPath) -> bool:
    return os.path.isfile(path)


def dir_exists(path: StrPath) -> bool:
    return os.path.isdir(path)


def dir_empty(path: StrPath) -> bool:
    return not (dir_exists(path) and any(os.scandir(path)))


def mkdir(path: StrPath, remove_content_if_exists: bool = False) -> None:
    if dir_exists(path) and remove_content_if_exists:
        clean_dir(path)
    os.makedirs(path, exist_ok=True)


def ensure_base_path(path: StrPath) -> None:
    """Make the folder a file at ``path`` goes into."""
    base = os.path.dirname(path)
    if base:
        os.makedirs(base, exist_ok=True)


def clean_dir(path: StrPath, ignore_errors: bool = False) -> None:
    """Remove everything in ``path`` and keep the folder."""
    for entry in os.scandir(path):
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.remove(entry.path)
        except OSError:
            if not ignore_errors:
                raise


def remove_dir(path: StrPath) -> None:
    shutil.rmtree(path, ignore_errors=True)


def silent_remove(path: StrPath) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def touch(path: StrPath) -> None:
    ensure_base_path(path)
    Path(path).touch()


def copy_file(src: StrPath, dst: StrPath) -> None:
    ensure_base_path(dst)
    shutil.copyfile(src, dst)


def get_file_size(path: StrPath) -> int:
    return os.path.getsize(path)


def get_file_hash(path: StrPath) -> str:
    """sha256 of the file, base64 as the reference prints it."""
    import base64

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("utf-8")


def _wanted(name: str, valid_extensions: list[str] | None) -> bool:
    return valid_extensions is None or get_file_ext(name).lower() in [
        e.lower() for e in valid_extensions
    ]


def list_files(
    dir: StrPath,
    valid_extensions: list[str] | None = None,
    filter_fn: Callable[[str], bool] | None = None,
    ignore_valid_extensions_case: bool = False,
) -> list[str]:
    """Files directly in ``dir`` (full paths), optionally by extension and ``filter_fn``."""
    out = []
    for entry in sorted(os.scandir(dir), key=lambda e: e.name):
        wanted = entry.is_file() and _wanted(entry.name, valid_extensions)
        if wanted and (filter_fn is None or filter_fn(entry.path)):
            out.append(entry.path)
    return out


def list_files_recursively(
    dir: StrPath,
    valid_extensions: list[str] | None = None,
    filter_fn: Callable[[str], bool] | None = None,
) -> list[str]:
    out = []
    for root, _dirs, files in os.walk(dir):
        for name in sorted(files):
            full = os.path.join(root, name)
            if _wanted(name, valid_extensions) and (filter_fn is None or filter_fn(full)):
                out.append(full)
    return out


def list_dir_recursively(dir: StrPath) -> list[str]:
    """Every file below ``dir``, relative to it."""
    return [os.path.relpath(p, dir) for p in list_files_recursively(dir)]


def get_subdirs(dir_path: StrPath, recursive: bool = False) -> list[str]:
    if not recursive:
        return sorted(e.name for e in os.scandir(dir_path) if e.is_dir())
    out: list[str] = []
    for root, dirs, _files in os.walk(dir_path):
        out.extend(os.path.relpath(os.path.join(root, d), dir_path) for d in dirs)
    return sorted(out)


def archive_directory(dir_: StrPath, tar_path: StrPath) -> None:
    """Pack ``dir_`` into a tar (gzip when ``tar_path`` ends in ``.gz``)."""
    ensure_base_path(tar_path)
    gz = os.fspath(tar_path).endswith(".gz")
    with tarfile.open(tar_path, "w:gz") if gz else tarfile.open(tar_path, "w") as tar:
        tar.add(dir_, arcname=os.path.basename(os.path.normpath(dir_)))


def unpack_archive(archive_path: StrPath, target_dir: StrPath, remove_junk: bool = True) -> None:
    os.makedirs(target_dir, exist_ok=True)
    shutil.unpack_archive(os.fspath(archive_path), os.fspath(target_dir), filter="data")

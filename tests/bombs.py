"""Compression bombs for the tests: a few MB on disk, many GiB unpacked, made in milliseconds.

A gzip file may be several gzip members one after another; a member of 4 MiB of zeros takes
about 4 KB, so repeating it makes any amount of zeros at once.
"""

from __future__ import annotations

import json
import tarfile
import zlib

MiB = 1024 * 1024
_ZEROS = 4 * MiB
_ZEROS_GZ: bytes | None = None


def _gz(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip member
    return c.compress(data) + c.flush()


def _zeros_gz(n: int) -> bytes:
    """``n`` bytes of zeros (a multiple of 4 MiB) as gzip members."""
    global _ZEROS_GZ
    if _ZEROS_GZ is None:
        _ZEROS_GZ = _gz(bytes(_ZEROS))
    assert n % _ZEROS == 0
    return _ZEROS_GZ * (n // _ZEROS)


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def one_huge_file(unpacked_gib: int = 17) -> bytes:
    """The issue's bomb: one member of ``unpacked_gib`` GiB of zeros (17 GiB: about 17 MB)."""
    size = unpacked_gib * 1024 * MiB
    return _gz(_app_tar()) + _gz(_header("data.bin", size)) + _zeros_gz(size) + _gz(bytes(1024))


def many_files(count: int = 10, each: int = 100 * MiB) -> bytes:
    """Members each well under the cap on unpacked bytes, together at it: only the ratio of
    unpacked to compressed bytes tells it from an honest app."""
    parts = [_gz(_app_tar())]
    for i in range(count):
        parts += [_gz(_header(f"part{i}.bin", each)), _zeros_gz(each)]
    return b"".join(parts) + _gz(bytes(1024))


def _app_tar() -> bytes:
    """config.json and main.py as tar blocks, without the end-of-archive blocks."""
    out = b""
    for name, data in (
        (
            "config.json",
            json.dumps({"name": "Bomb", "slug": "bombs/app", "main_script": "main.py"}).encode(),
        ),
        ("main.py", b"print('hi')\n"),
    ):
        out += _header(name, len(data)) + data + bytes(-len(data) % 512)
    return out

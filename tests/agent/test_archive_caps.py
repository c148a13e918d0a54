"""An agent unpacks a release under the same caps as the server (issue 10, point 3): a bomb
that reaches it (an older server, other caps) costs a few MB, not its unpacked size."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from appyard.agent.cache import PrepareError, ReleaseCache, unpack
from tests import bombs
from tests.support import APPS, pack


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("kind", ["one_huge_file", "many_files"])
def test_a_bomb_is_refused_before_anything_is_written(tmp_path: Path, kind: str) -> None:
    data = bombs.one_huge_file(17) if kind == "one_huge_file" else bombs.many_files(10)
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(data)
    dest = tmp_path / "x"
    dest.mkdir()
    began = time.monotonic()
    with pytest.raises(PrepareError, match="refused: archive unpacks to more than"):
        unpack(archive, dest)
    assert time.monotonic() - began < 10
    assert _du(dest) == 0  # checked before anything is written


def test_the_release_cache_keeps_nothing_of_a_bomb(tmp_path: Path) -> None:
    data = bombs.many_files(10)
    sha = hashlib.sha256(data).hexdigest()
    cache = ReleaseCache(tmp_path / "releases")
    with pytest.raises(PrepareError, match="compression bomb"):
        cache.get(sha, lambda path: path.write_bytes(data))
    assert list((tmp_path / "releases").iterdir()) == [tmp_path / "releases" / f".{sha}.lock"]
    # an honest release still unpacks
    good = pack(APPS / "worker")
    folder = cache.get(hashlib.sha256(good).hexdigest(), lambda path: path.write_bytes(good))
    assert (folder / "config.json").is_file() and (folder / "main.py").is_file()

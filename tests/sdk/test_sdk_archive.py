"""The publish archive: deterministic bytes, skipped junk, clear manifest errors."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from appyard.errors import InvalidArgumentsError
from appyard.sdk.archive import build_archive, read_manifest, sha256_hex


def make_app(root: Path) -> Path:
    app = root / "app"
    (app / "src").mkdir(parents=True)
    (app / "config.json").write_text(json.dumps({"name": "Hello", "slug": "me/hello"}))
    (app / "src" / "main.py").write_text("print('hi')\n")
    (app / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (app / "run.sh").chmod(0o755)
    for junk in (".git/HEAD", "__pycache__/x.cpython-311.pyc", ".venv/bin/python", "src/m.pyc"):
        (app / junk).parent.mkdir(parents=True, exist_ok=True)
        (app / junk).write_text("junk")
    return app


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def test_same_content_same_bytes(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    first = build_archive(app)
    # touch every file (new mtimes) and rebuild: nothing about time may leak into the bytes
    later = time.time() + 1000
    for p in app.rglob("*"):
        os.utime(p, (later, later))
    assert build_archive(app) == first
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in sorted(app.rglob("*")):
        target = copy / p.relative_to(app)
        if p.is_dir():
            target.mkdir(exist_ok=True)
        else:
            target.write_bytes(p.read_bytes())
            target.chmod(p.stat().st_mode)
    assert sha256_hex(build_archive(copy)) == sha256_hex(first)  # another path, same sha256
    (app / "src" / "main.py").write_text("print('changed')\n")
    assert build_archive(app) != first


def test_layout_and_normalised_metadata(tmp_path: Path) -> None:
    infos = members(build_archive(make_app(tmp_path)))
    names = [i.name for i in infos]
    assert names == ["config.json", "run.sh", "src", "src/main.py"]  # sorted, root-relative
    for info in infos:
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
    by_name = {i.name: i for i in infos}
    assert by_name["run.sh"].mode == 0o755
    assert by_name["config.json"].mode == 0o644
    assert by_name["src"].isdir()


def test_gzip_header_has_no_time_or_name(tmp_path: Path) -> None:
    data = build_archive(make_app(tmp_path))
    assert data[4:8] == b"\0\0\0\0"  # MTIME
    assert data[3] & 0x08 == 0  # no FNAME flag


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentsError, match="is not a folder"):
        read_manifest(tmp_path / "nope")
    with pytest.raises(InvalidArgumentsError, match=r"config\.json not found"):
        read_manifest(tmp_path)
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(InvalidArgumentsError, match="not valid JSON"):
        build_archive(tmp_path)
    (tmp_path / "config.json").write_text("[]")
    with pytest.raises(InvalidArgumentsError, match="JSON object"):
        read_manifest(tmp_path)
    (tmp_path / "config.json").write_text('{"slug": "a/b"}')
    with pytest.raises(InvalidArgumentsError, match="has no 'name'"):
        read_manifest(tmp_path)

"""App command, app env, release cache, venv cache, log reading: the agent's pure-ish parts."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from appyard.agent.appspec import app_command, app_env
from appyard.agent.cache import PrepareError, ReleaseCache, VenvCache, requirements_of, unpack
from appyard.agent.logship import read_batch
from appyard.errors import ManifestError
from appyard.schemas.agents import TaskAssignment
from appyard.schemas.manifest import Manifest

PY = "/opt/py/bin/python"


def _m(**keys: object) -> Manifest:
    """A parsed manifest with the given keys (a ``main_script`` unless an entrypoint is given)."""
    base: dict[str, object] = {"name": "T", "slug": "t/t"}
    if "entrypoint" not in keys:
        base["main_script"] = "src/main.py"
    return Manifest.parse({**base, **keys})


def _app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "src" / "main.py").write_text("print('hi')\n")
    (app / "run.sh").write_text("#!/bin/sh\necho hi\n")
    return app


def test_main_script_runs_with_the_given_interpreter(tmp_path: Path) -> None:
    app = _app(tmp_path)
    argv = app_command(_m(main_script="src/main.py"), app, PY, {})
    assert argv == [PY, str((app / "src" / "main.py").resolve())]
    assert app_command(_m(main_script="run.sh"), app, PY, {}) == [str((app / "run.sh").resolve())]


def test_entrypoint_replaces_python_and_expands_env(tmp_path: Path) -> None:
    app = _app(tmp_path)
    env = {"APP_PORT": "8123", "APP_DIR": str(app)}
    cfg = _m(entrypoint="python3 -m uvicorn src.main:app --port $APP_PORT --root ${APP_DIR}")
    argv = app_command(cfg, app, PY, env)
    assert argv == [PY, "-m", "uvicorn", "src.main:app", "--port", "8123", "--root", str(app)]
    assert app_command(_m(entrypoint="python3.11 x.py"), app, PY, env)[0] == PY
    argv = app_command(_m(entrypoint="./run.sh a", main_script="src/main.py"), app, PY, env)
    assert argv == [str((app / "run.sh").resolve()), "a"]
    # a blank entrypoint leaves the main_script to run
    argv = app_command(_m(entrypoint="  ", main_script="src/main.py"), app, PY, env)
    assert argv == [PY, str((app / "src" / "main.py").resolve())]
    assert app_command(_m(entrypoint="bash -c 'echo $X'"), app, PY, env) == [
        "bash",
        "-c",
        "echo $X",
    ]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "main_script"),
        ({"main_script": "../outside.py"}, "main_script"),
        ({"entrypoint": "python 'unbalanced"}, "entrypoint"),
        ({"entrypoint": ["python", "-c", "1"]}, "entrypoint"),  # a command line, not a list
    ],
)
def test_bad_manifests_are_refused_when_parsed(config: dict[str, object], field: str) -> None:
    with pytest.raises(ManifestError) as info:
        Manifest.parse({"name": "T", "slug": "t/t", **config})
    assert info.value.field == field


@pytest.mark.parametrize("manifest", [_m(main_script="missing.py"), _m(entrypoint="../escape.sh")])
def test_paths_outside_or_missing_are_refused(tmp_path: Path, manifest: Manifest) -> None:
    (tmp_path / "escape.sh").write_text("")
    with pytest.raises(PrepareError):
        app_command(manifest, _app(tmp_path), PY, {})


def test_release_cache_parses_a_manifest_once(tmp_path: Path) -> None:
    cache = ReleaseCache(tmp_path)
    config = {"name": "T", "slug": "t/t", "main_script": "main.py", "icon": "x.png"}
    first = cache.manifest("A" * 64, config)
    assert cache.manifest("a" * 64, config) is first
    assert first.model_extra == {"icon": "x.png"}
    with pytest.raises(ManifestError, match="slug"):
        cache.manifest("b" * 64, {**config, "slug": "nope"})


def _assignment(**kw: object) -> TaskAssignment:
    data: dict[str, object] = {
        "task_id": 11,
        "team_id": 2,
        "workspace_id": 3,
        "user_id": 4,
        "module_id": 5,
        "app_name": "Export",
        "release_sha256": "0" * 64,
        "release_url": "/x",
        "config": {},
        "state": {"projectId": 7, "flag": True, "name": "a b", "nested": {"k": [1]}},
        "context": {"teamId": 2, "workspaceId": 3},
        "token": "task-token",
        "stop_grace_s": 10.0,
        "log_level": "debug",
        "env": {"PROJECT_ID": "7"},
    }
    data.update(kw)
    return TaskAssignment.model_validate(data)


def test_app_env(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "APPYARD_AGENT_TOKEN": "secret",
        "PYTHONPATH": "/elsewhere",
        "API_TOKEN": "someone-else",
    }
    env = app_env(
        _assignment(), server="http://s:1", agent_id=9, app_dir=tmp_path, port=8001, base=base
    )
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/root"
    assert "APPYARD_AGENT_TOKEN" not in env
    expected = {
        "SERVER_ADDRESS": "http://s:1",
        "API_TOKEN": "task-token",
        "TASK_ID": "11",
        "TEAM_ID": "2",
        "WORKSPACE_ID": "3",
        "AGENT_ID": "9",
        "USER_ID": "4",
        "APP_NAME": "Export",
        "PROJECT_ID": "7",
        "LOG_LEVEL": "debug",
        "APP_PORT": "8001",
        "APP_DIR": str(tmp_path),
        "PYTHONPATH": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "modal.state.projectId": "7",
        "modal.state.flag": "true",
        "modal.state.name": "a b",
        "modal.state.nested": '{"k": [1]}',
        "context.teamId": "2",
        "context.workspaceId": "3",
    }
    assert {k: env.get(k) for k in expected} == expected
    assert json.loads(env["MODAL_STATE"])["nested"] == {"k": [1]}
    assert json.loads(env["CONTEXT"]) == {"teamId": 2, "workspaceId": 3}


# --- releases -------------------------------------------------------------------------------


def _tar(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tar.addfile(e)
            else:
                info = tarfile.TarInfo(e[0])
                info.size = len(e[1])
                tar.addfile(info, io.BytesIO(e[1]))
    return buf.getvalue()


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_release_cache_fetches_once_and_checks_the_sha(tmp_path: Path) -> None:
    data = _tar(
        [
            ("config.json", b'{"name": "x"}'),
            ("src/main.py", b"print(1)"),
            _link("src/alias.py", "main.py"),
        ]
    )
    sha = hashlib.sha256(data).hexdigest()
    calls: list[Path] = []

    def fetch(dest: Path) -> None:
        calls.append(dest)
        dest.write_bytes(data)

    cache = ReleaseCache(tmp_path / "releases")
    app = cache.get(sha, fetch)
    assert (app / "src" / "main.py").read_text() == "print(1)"
    assert (app / "src" / "alias.py").is_symlink()
    assert cache.get(sha, fetch) == app and len(calls) == 1
    assert [p.name for p in (tmp_path / "releases").iterdir() if not p.name.startswith(".")] == [
        sha
    ]
    with pytest.raises(PrepareError, match="corrupt"):
        cache.get("1" * 64, fetch)
    assert not (tmp_path / "releases" / ("1" * 64)).exists()
    with pytest.raises(PrepareError, match="64 hex"):
        cache.get("../etc", fetch)


def test_concurrent_tasks_of_one_release_fetch_it_once(tmp_path: Path) -> None:
    data = _tar([("config.json", b"{}")])
    sha = hashlib.sha256(data).hexdigest()
    calls: list[int] = []
    entered = threading.Event()
    release = threading.Event()

    def slow_fetch(dest: Path) -> None:
        calls.append(1)
        entered.set()
        assert release.wait(10)
        dest.write_bytes(data)

    cache = ReleaseCache(tmp_path / "releases")
    (tmp_path / "releases").mkdir()
    (tmp_path / "releases" / f".{sha[:12]}-leftover").mkdir()  # an agent died mid-fetch
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get(sha, slow_fetch)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    assert entered.wait(10)
    release.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 4
    assert not (tmp_path / "releases" / f".{sha[:12]}-leftover").exists()


def test_archive_with_one_top_folder(tmp_path: Path) -> None:
    data = _tar([("myapp/config.json", b"{}"), ("myapp/main.py", b"")])
    sha = hashlib.sha256(data).hexdigest()
    app = ReleaseCache(tmp_path).get(sha, lambda dest: dest.write_bytes(data))
    assert sorted(p.name for p in app.iterdir()) == ["config.json", "main.py"]


@pytest.mark.parametrize(
    "entry",
    [
        ("../evil.py", b"x"),
        ("/abs/evil.py", b"x"),
        _link("out", "/etc/passwd"),
        _link("sub/out", "../../x"),
        _link("hard", "/etc/passwd", tarfile.LNKTYPE),
        _link("dev", "", tarfile.CHRTYPE),
    ],
)
def test_unpack_refuses_escapes(tmp_path: Path, entry: tarfile.TarInfo | tuple[str, bytes]) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar([("config.json", b"{}"), entry]))
    dest = tmp_path / "x"
    dest.mkdir()
    with pytest.raises(PrepareError):
        unpack(archive, dest)
    assert list(dest.iterdir()) == []  # checked before anything is written


def test_unpack_refuses_garbage(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"not a tar")
    with pytest.raises(PrepareError, match="cannot be unpacked"):
        unpack(archive, tmp_path)


# --- requirements and venvs -------------------------------------------------------------------


def test_requirements_of(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert requirements_of(app, _m()) is None
    (app / "requirements.txt").write_text("# only a comment\n\n")
    assert requirements_of(app, _m()) is None
    (app / "requirements.txt").write_text("six==1.16\n")
    assert requirements_of(app, _m()) == "six==1.16\n"
    assert requirements_of(app, _m(requirements=["a", "b>=2"])) == "a\nb>=2"
    (app / "deps.txt").write_text("c\n")
    assert requirements_of(app, _m(requirements="deps.txt")) == "c\n"
    with pytest.raises(PrepareError):
        requirements_of(app, _m(requirements="missing.txt"))
    with pytest.raises(ManifestError, match="requirements"):
        _m(requirements="../../etc/passwd")
    with pytest.raises(ManifestError, match="requirements"):
        _m(requirements=["a", 2])


def make_wheel(folder: Path, name: str = "tinypkg", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel, so a venv can be built without the network."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as z:
        for arc, text in files.items():
            z.writestr(arc, text)
        z.writestr(f"{info}/RECORD", "".join(f"{a},,\n" for a in files) + f"{info}/RECORD,,\n")
    return path


def test_venv_from_requirements_sees_the_sdk(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    cache = VenvCache(tmp_path / "venvs")
    req = f"{wheel}\n"
    python = cache.python_for(req)
    assert python != sys.executable and Path(python).exists()
    out = subprocess.run(
        [python, "-c", "import tinypkg, appyard, sys; print(tinypkg.VERSION, sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout.split()
    assert out[0] == "1.0" and Path(out[1]) == Path(python).parent.parent
    # the agent's environment was not touched by the install
    r = subprocess.run([sys.executable, "-c", "import tinypkg"], capture_output=True)
    assert r.returncode != 0
    assert cache.python_for(req) == python  # cached


def test_venv_failure_is_reported_and_not_cached(tmp_path: Path) -> None:
    cache = VenvCache(tmp_path / "venvs")
    req = f"{tmp_path / 'no-such-1.0-py3-none-any.whl'}\n"
    with pytest.raises(PrepareError, match="install the requirements"):
        cache.python_for(req)
    assert not (tmp_path / "venvs" / cache.key(req)).exists()


# --- log reading ------------------------------------------------------------------------------


def _rec(text: str) -> bytes:
    return (
        json.dumps({"t": "2024-01-01T00:00:00.000001Z", "level": "warning", "text": text}) + "\n"
    ).encode()


def test_read_batch_offsets_and_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    data = _rec("a") + b"not json\n" + b"\n" + _rec("b") + b'{"t": "torn'
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = read_batch(fd, 0, final=False, max_lines=2)
        assert got is not None
        end, recs = got
        assert [r.text for r in recs] == ["a", "not json"] and recs[0].level == "warning"
        assert recs[1].level == "info"
        got = read_batch(fd, end, final=False)
        assert got is not None
        end2, recs = got
        assert [r.text for r in recs] == ["b"]
        assert end2 == len(data) - len(b'{"t": "torn')
        assert read_batch(fd, end2, final=False) is None  # the torn line waits
        got = read_batch(fd, end2, final=True)  # ... unless nothing will write it any more
        assert got is not None and got[0] == len(data)
        assert [r.text for r in got[1]] == ['{"t": "torn']
        assert read_batch(fd, len(data), final=True) is None
    finally:
        os.close(fd)

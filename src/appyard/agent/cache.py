"""The agent's caches: release archives (by sha256) and app venvs (by requirements).

Releases: ``cache/releases/<sha256>/`` holds the extracted app folder. It is downloaded to a
temporary folder, its sha256 checked against the name, unpacked safely (no absolute paths,
no ``..``, no links leading out, no devices; within the caps on unpacked bytes, entries and
compression ratio that the server also holds a publish to), and renamed into place: the folder exists only
when it is complete, so a check for it needs no lock. Filling it takes an flock per sha, so
two tasks (or two agents sharing a cache) of one release download it once.

Venvs: an app with requirements gets ``cache/venvs/<key>/``, key = sha256 of the requirements
text plus the agent's interpreter. It is created without ``--system-site-packages`` (that would
expose the *base* interpreter's packages, not the agent's), the requirements are installed
into it, and only then a ``.pth`` file is added that appends the agent's own site-packages to
its ``sys.path``: the app's pinned packages win, and the SDK (``import appyard``) and its
dependencies still come from the agent. The ``.pth`` is added after pip ran, so pip never sees
(or uninstalls) the agent's packages. ``.ready`` marks a finished venv; a half-built one is
removed and built again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from appyard.archive import DEFAULT_CAPS, ArchiveRefused, Caps
from appyard.archive import members as archive_members
from appyard.errors import AppyardError
from appyard.schemas.manifest import Manifest, ManifestCache

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
#: how long a pip install may take before the task fails
PIP_TIMEOUT_S = 1800.0


class PrepareError(AppyardError):
    """The app could not be made ready to run (download, checksum, unpack, venv, command)."""


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock: serialises threads of this agent and other processes alike."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check_member(member: tarfile.TarInfo) -> None:
    """Refuse anything that could write outside the destination."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise PrepareError(f"release archive entry {member.name!r} points outside the app folder")
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        base = name.parent if member.issym() else PurePosixPath()
        if target.is_absolute() or _escapes(base / target):
            raise PrepareError(
                f"release archive link {member.name!r} -> {member.linkname!r} leads outside"
            )
    elif not (member.isfile() or member.isdir()):
        raise PrepareError(f"release archive entry {member.name!r} is not a file or a folder")


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def unpack(archive: Path, dest: Path, caps: Caps = DEFAULT_CAPS) -> None:
    """Extract a tar.gz into ``dest``, checking every member before anything is written.

    The archive is read as a stream, twice (to check, then to extract), under the caps of
    ``appyard.archive`` (unpacked bytes, entries, compression ratio): a bomb the server let
    through (an older server, or one with other caps) stops after the caps' worth of work,
    not its full size, and writes nothing.
    """
    try:
        with open(archive, "rb") as f:
            for _, member in archive_members(f, caps):
                _check_member(member)
        with open(archive, "rb") as f:
            for tar, member in archive_members(f, caps):
                _extract(tar, member, dest)
    except ArchiveRefused as e:
        raise PrepareError(f"release archive refused: {e}") from e
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise PrepareError(f"release archive cannot be unpacked: {e}") from e


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    """One checked member, written with ordinary modes: no owner, setuid or group/other write
    bit from the archive (what tarfile's ``data`` filter does, which Python 3.11 before 3.11.4,
    Debian 12's among them, lacks)."""
    tar.extract(member, dest, set_attrs=False)
    if member.isdir():
        os.chmod(dest / member.name, 0o755)
    elif member.isfile():
        os.chmod(dest / member.name, 0o755 if member.mode & 0o111 else 0o644)


def app_root(extracted: Path) -> Path:
    """The app folder inside an extracted archive: its root, or its one top-level folder."""
    if (extracted / "config.json").is_file():
        return extracted
    entries = [p for p in extracted.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "config.json").is_file():
        return entries[0]
    return extracted


class ReleaseCache:
    """``cache/releases``: sha256 → extracted app folder, and its parsed manifest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._manifests = ManifestCache()

    def manifest(self, sha256: str, config: dict[str, Any]) -> Manifest:
        """The release's manifest (``config`` as the server sent it), parsed once per release;
        a ``ManifestError`` (an ``AppyardError``) names the key that breaks a rule."""
        return self._manifests.get(sha256.lower(), config)

    def path(self, sha256: str) -> Path:
        return self.root / sha256

    def get(self, sha256: str, fetch: Callable[[Path], object]) -> Path:
        """The app folder of the release; ``fetch(path)`` downloads the archive when needed."""
        sha256 = sha256.lower()
        if not SHA256_RE.match(sha256):
            raise PrepareError(f"release sha256 {sha256!r} is not 64 hex digits")
        final = self.path(sha256)
        if final.is_dir():
            return final
        self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / f".{sha256}.lock"):
            if final.is_dir():  # another task fetched it while we waited
                return final
            for stale in self.root.glob(f".{sha256[:12]}-*"):  # of an agent killed mid-way
                shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}-", dir=self.root))
            try:
                archive = tmp / "archive"
                fetch(archive)
                got = sha256_file(archive)
                if got != sha256:
                    raise PrepareError(
                        f"release archive is corrupt: sha256 {got}, expected {sha256}"
                    )
                extracted = tmp / "x"
                extracted.mkdir()
                unpack(archive, extracted, Caps.from_env())  # the server's variables
                os.rename(app_root(extracted), final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return final


def requirements_of(app_dir: Path, manifest: Manifest) -> str | None:
    """The app's requirements text, or None when it has none.

    From the manifest's ``requirements`` (a list of requirement lines, or the path of a
    file in the app folder), else from ``requirements.txt`` in the app folder.
    """
    raw = manifest.requirements
    text: str | None = None
    if isinstance(raw, list):
        text = "\n".join(raw)
    elif isinstance(raw, str) and raw.strip():
        path = (app_dir / raw).resolve()
        if not path.is_relative_to(app_dir.resolve()) or not path.is_file():
            raise PrepareError(f"manifest requirements file {raw!r} is not in the app folder")
        text = path.read_text(encoding="utf-8")
    elif (app_dir / "requirements.txt").is_file():
        text = (app_dir / "requirements.txt").read_text(encoding="utf-8")
    if text is None:
        return None
    lines = [ln.strip() for ln in text.splitlines()]
    if not any(ln and not ln.startswith("#") for ln in lines):
        return None
    return text


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


class VenvCache:
    """``cache/venvs``: requirements → a venv's interpreter path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def key(self, requirements: str) -> str:
        h = hashlib.sha256()
        for part in (requirements, sys.version, sys.prefix):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()

    def python_for(self, requirements: str) -> str:
        """The interpreter of the venv for ``requirements``, built on first use."""
        venv = self.root / self.key(requirements)
        ready = venv / ".ready"
        if ready.exists():
            return str(_venv_python(venv))
        self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / f".{venv.name}.lock"):
            if ready.exists():
                return str(_venv_python(venv))
            shutil.rmtree(venv, ignore_errors=True)
            try:
                self._build(venv, requirements)
            except BaseException:
                shutil.rmtree(venv, ignore_errors=True)
                raise
            ready.touch()
        return str(_venv_python(venv))

    def _build(self, venv: Path, requirements: str) -> None:
        log = venv.with_suffix(".log")
        log.unlink(missing_ok=True)
        agent_has_pip = importlib.util.find_spec("pip") is not None
        # with the agent's pip (``pip --python``) the venv needs no pip of its own: much faster
        create = [sys.executable, "-m", "venv", str(venv)]
        if agent_has_pip:
            create.insert(3, "--without-pip")
        self._run(create, log, "create the venv")
        req = venv / "requirements.txt"
        req.write_text(requirements, encoding="utf-8")
        py = str(_venv_python(venv))
        pip = [sys.executable, "-m", "pip", "--python", py] if agent_has_pip else [py, "-m", "pip"]
        self._run(
            [*pip, "install", "--disable-pip-version-check", "--no-input", "-r", str(req)],
            log,
            "install the requirements",
        )
        purelib = subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirs = list(site.getsitepackages())
        user = site.getusersitepackages()
        if site.ENABLE_USER_SITE and os.path.isdir(user):
            dirs.append(user)
        lines = [f"import site; site.addsitedir({d!r})" for d in dirs]
        Path(purelib, "_appyard_agent.pth").write_text("\n".join(lines) + "\n")

    def _run(self, cmd: list[str], log: Path, what: str) -> None:
        with open(log, "ab") as out:
            try:
                proc = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=PIP_TIMEOUT_S,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                raise PrepareError(f"could not {what}: {e}") from e
        if proc.returncode != 0:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            raise PrepareError(f"could not {what} (exit {proc.returncode}):\n" + "\n".join(tail))

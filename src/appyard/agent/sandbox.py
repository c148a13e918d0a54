"""What an app's processes can see and reach on the agent's machine.

An app is untrusted code: it shares the agent's machine, and without more it would share the
agent's user and HOME (its tokens, ``up``'s admin token, every other task's folder). On Linux
with bubblewrap (``bwrap``) each app runs in a sandbox of its own (``Isolation.wrap``):

- the system read-only: ``/usr`` with its ``/bin``, ``/lib``, ... links, and the files of
  ``/etc`` that programs read (``ETC``), none with secrets;
- the interpreter's prefixes (the agent's venv and base Python, the app's venv), the
  ``appyard`` package and the release read-only, each at its own path (paths in argv, in
  ``APP_DIR`` and in a venv's files stay true);
- its task's ``work/`` folder writable, at its own path, and a private HOME (``APP_HOME``)
  and ``/tmp`` (empty, in memory): nothing else of the agent's folders, HOME or files;
- its own PID namespace: the app sees only its own processes, and when the sandbox's first
  process (bubblewrap's) ends, the kernel kills every process left in it, daemons included;
  ``--die-with-parent`` ends it when its supervisor dies (even by SIGKILL);
- no capabilities (an agent running as root included) and no new privileges;
- the network as the agent has it (the app reaches ``SERVER_ADDRESS``), or none but a
  loopback of its own with ``"sandbox": {"network": false}``; extra read-only paths the
  manifest asks for and the agent allows (``--app-path``); GPU devices when asked for.

The sandbox's ``/etc`` is one folder, a copy of those files (``EtcSnapshot``) made again when
one of them changes: one mount instead of one per file, about a quarter of bubblewrap's
start-up.

Without a usable bubblewrap (none on ``PATH``, or the probe at the agent's start fails), an
agent running as root runs each app as a dedicated unprivileged user instead (mode ``user``,
``--app-user``, through util-linux's ``setpriv``): the app cannot read the agent's or the
server's files, its tokens or other tasks' logs and jobs, and owns only its task's ``work/``
and private HOME; it shares the system, the network and ``/tmp`` with everything else, and
apps of that user can reach each other's folders. Where neither can be made (no bubblewrap and
not root, or ``--no-sandbox``) apps run as the agent's user with nothing of the above (mode
``none``). The agent says which at start and in its hello, and the server shows it
(``appyard agent list``, the agents page, ``appyard up``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import appyard
from appyard.agent.cache import PrepareError
from appyard.schemas.manifest import SandboxSpec

log = logging.getLogger("appyard.agent")

#: how an agent runs apps, as its hello says
Mode = Literal["sandboxed", "user", "none"]
#: the app's processes are in a bubblewrap sandbox
SANDBOXED: Mode = "sandboxed"
#: no sandbox, but the app runs as a user of its own (an agent running as root)
APP_USER: Mode = "user"
#: no sandbox: the app runs as the agent's user and sees what that user sees
NO_SANDBOX: Mode = "none"
#: the app's HOME inside the sandbox (a private, empty folder in memory)
APP_HOME = "/home/app"
#: top-level links or folders of a merged-/usr system, taken as the host has them
ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: the user apps run as in mode ``user`` (``--app-user``); ``nobody`` when it does not exist
DEFAULT_APP_USER = "appyard-app"
#: what of /etc programs read (names, TLS roots, time zone, the loader's cache); no secrets
ETC = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "debian_version",
    "fonts",
    "gai.conf",
    "group",
    "host.conf",
    "hostname",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "pki",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)
#: device nodes given to an app that asks for GPUs (those that exist)
GPU_DEVICES = ("/dev/dri", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
#: how long the probe at start may take
PROBE_TIMEOUT_S = 15.0


def _python_dirs() -> list[str]:
    """Folders the agent's interpreter and its packages live in (the app's Python is it, or a
    venv made from it): prefixes, site-packages, and where ``appyard`` itself is imported from
    (an editable install's source folder)."""
    dirs = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    dirs.update(site.getsitepackages())
    user = site.getusersitepackages()
    if site.ENABLE_USER_SITE and os.path.isdir(user):
        dirs.add(user)
    dirs.add(str(Path(appyard.__file__).resolve().parent.parent))
    dirs.add(os.path.dirname(os.path.realpath(sys.executable)))
    found = {os.path.realpath(d) for d in dirs if os.path.isdir(d)} | {
        d for d in dirs if os.path.isdir(d)
    }
    return sorted(found)


def _outermost(paths: Iterable[str]) -> list[str]:
    """``paths`` without those inside another of them (one bind covers them)."""
    out: list[str] = []
    for p in sorted(set(paths)):
        if not any(p == o or p.startswith(o.rstrip("/") + "/") for o in out):
            out.append(p)
    return out


class EtcSnapshot:
    """A copy of the files of ``ETC`` in one folder, bound as the sandbox's ``/etc``.

    One mount instead of one per file makes a sandbox a quarter cheaper to start. A copy is
    named by its content (``etc-<sha256>``), so agents sharing a home share it and none
    replaces a copy that a running app has bound; it is made again when a file of ``ETC``
    changes (its size, time or inode, checked at each start: a few ``stat`` calls).
    """

    def __init__(self, root: Path, source: str = "/etc", names: Sequence[str] = ETC) -> None:
        self.root = root
        self.source = source
        self.names = tuple(names)
        self._lock = threading.Lock()
        self._seen: tuple[object, ...] | None = None
        self._path = ""

    def _signature(self) -> tuple[object, ...]:
        out: list[object] = []
        for name in self.names:
            try:
                st = os.stat(os.path.join(self.source, name))
            except OSError:
                out.append(None)
                continue
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(out)

    def path(self) -> str:
        """The folder of the current copy, made first if a file changed since the last one."""
        seen = self._signature()
        with self._lock:
            if seen != self._seen or not self._path:
                self._path = self._make()
                self._seen = seen
            return self._path

    def _make(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".etc-", dir=self.root))
        try:
            tmp.chmod(0o755)
            for name in self.names:
                src = os.path.join(self.source, name)
                if os.path.isdir(src):  # links inside stay links (into /usr, bound as well)
                    shutil.copytree(src, tmp / name, symlinks=True)
                elif os.path.exists(src):  # a link at the top (resolv.conf) is read through
                    shutil.copyfile(src, tmp / name)
                    (tmp / name).chmod(0o644)
            final = self.root / f"etc-{_digest(tmp)}"
            try:
                os.rename(tmp, final)
            except OSError:  # made before with the same content: use it
                if not final.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return str(final)


def _digest(folder: Path) -> str:
    """A short hash of a folder's names, link targets and file contents."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, folder).encode(errors="surrogateescape") + b"\0")
            if os.path.islink(path):
                h.update(b"L" + os.fsencode(os.readlink(path)))
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    h.update(b"F" + hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:20]


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user apps run as (mode ``user``)."""

    name: str
    uid: int
    gid: int
    setpriv: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run as this user, with no groups, capabilities or new privileges;
        ``setpriv`` executes it in its own place (same pid), so the stop protocol is that of
        an app run without a sandbox."""
        return [
            self.setpriv,
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
            *argv,
        ]


@dataclass(frozen=True)
class Isolation:
    """How this agent isolates its apps: ``mode`` (``sandboxed``, ``user`` or ``none``), and
    why."""

    mode: Mode
    note: str = ""
    bwrap: str | None = None
    #: the mounts every sandbox has but ``/etc``, as bubblewrap arguments
    base: tuple[str, ...] = ()
    #: folders an app may ask to read (``sandbox.read_only_paths``)
    allowed_paths: tuple[str, ...] = ()
    #: folders an app may never see, whatever is allowed (the agent's own)
    private: tuple[str, ...] = field(default_factory=tuple)
    #: the sandbox's /etc
    etc: EtcSnapshot | None = None
    #: the user apps run as (mode ``user``)
    run_as: RunAs | None = None

    @property
    def sandboxed(self) -> bool:
        return self.mode == SANDBOXED

    def wrap(
        self,
        argv: Sequence[str],
        env: MutableMapping[str, str],
        *,
        app_dir: Path,
        python: str,
        work: Path,
        spec: SandboxSpec | None,
        gpus: Sequence[int] | None = None,
    ) -> list[str]:
        """The command that runs ``argv`` in the app's sandbox, or as the app user (``argv``
        itself with neither).

        ``env`` is the app's environment: its ``HOME`` and ``TMPDIR`` become the sandbox's
        (the app user's: folders of the task's own). PrepareError when the manifest asks for
        a path the agent does not give apps. ``gpus``: the indices of the GPUs placement gave
        the session; only their devices are in its sandbox (the manifest's ``sandbox.gpu``
        alone, with no GPUs placed, gives the machine's).
        """
        spec = spec or SandboxSpec()
        extra = self._extra_paths(spec.read_only_paths)
        if self.run_as is not None:
            return self._as_user(self.run_as, argv, env, work)
        if not self.sandboxed or self.bwrap is None:
            return list(argv)
        _check_program(argv, env)
        env["HOME"] = APP_HOME
        env["TMPDIR"] = "/tmp"
        args = [self.bwrap, *self.base]
        if self.etc is not None:
            args += ["--ro-bind", self.etc.path(), "/etc"]
        ro = _outermost([*extra, str(app_dir), *self._venv_dirs(python)])
        mounts = [("--ro-bind", p) for p in ro] + [("--bind", str(work))]
        if gpus:
            mounts += [("--dev-bind", d) for d in _gpu_devices(gpus)]
            if os.path.isdir("/sys"):
                mounts.append(("--ro-bind", "/sys"))
        elif spec.gpu:
            mounts += [("--dev-bind", d) for d in _gpu_devices()]
            if os.path.isdir("/sys"):
                mounts.append(("--ro-bind", "/sys"))
        for flag, path in sorted(mounts, key=lambda m: m[1]):  # a folder before what is in it
            args += [flag, path, path]
        if not spec.network:
            args.append("--unshare-net")
        args += ["--chdir", str(work), "--", *argv]
        return args

    def close_folders(self, folders: Sequence[Path]) -> None:
        """For the app user: the agent's folders may be passed through, not listed (an app
        must not find other tasks' folders or other apps' releases); they are made first."""
        if self.run_as is None:
            return
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o711)

    @staticmethod
    def _as_user(
        run_as: RunAs, argv: Sequence[str], env: MutableMapping[str, str], work: Path
    ) -> list[str]:
        """The task's ``work/`` and a private HOME (with its TMPDIR) in the task's folder,
        owned by the app user and by no one else; the task's folder itself is the agent's,
        open to passing through only (its log and state are not the app's to read)."""
        _check_program(argv, env)
        home = work.parent / "home"
        tmp = home / "tmp"
        for folder in (work, home, tmp):
            folder.mkdir(exist_ok=True)
            os.chown(folder, run_as.uid, run_as.gid)
            folder.chmod(0o700)
        work.parent.chmod(0o711)
        env["HOME"] = str(home)
        env["TMPDIR"] = str(tmp)
        return run_as.command(argv)

    def _extra_paths(self, wanted: Sequence[str]) -> list[str]:
        """The manifest's ``read_only_paths``, each one the agent allows, resolved."""
        out: list[str] = []
        for raw in wanted:
            path = os.path.realpath(raw)
            allowed = any(_within(path, a) for a in self.allowed_paths)
            if not allowed or any(_within(p, path) or _within(path, p) for p in self.private):
                raise PrepareError(
                    f"the manifest asks to read {raw!r}, which this agent does not give apps "
                    f"(allowed: {', '.join(self.allowed_paths) or 'none'}; see --app-path)"
                )
            if not os.path.exists(path):
                raise PrepareError(f"the manifest asks to read {raw!r}, which does not exist")
            out.append(path)
        return out

    def _venv_dirs(self, python: str) -> list[str]:
        """An app venv's folder (the interpreter ``python`` is in ``<venv>/bin``), if it is one
        that no base mount covers already."""
        if python == sys.executable:
            return []
        venv = Path(python).parent.parent
        return [str(venv)] if (venv / "pyvenv.cfg").is_file() else []


def _check_program(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Fail as a supervisor does when ``argv[0]`` cannot be executed: in a sandbox bubblewrap
    would run it, and its failure would read as the app's own exit code 1."""
    word = argv[0] if argv else ""
    prog = word if "/" in word else shutil.which(word, path=env.get("PATH", os.defpath))
    if not word or prog is None or not os.path.isfile(prog) or not os.access(prog, os.X_OK):
        why = "not an executable file" if prog and os.path.exists(prog) else "no such file"
        raise PrepareError(f"cannot execute {word or '(empty command)'}: {why}")


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _gpu_devices(only: Sequence[int] | None = None) -> list[str]:
    """The GPU device nodes that exist: the shared ones, and each GPU's own (``only``: those
    of these indices)."""
    found = [d for d in GPU_DEVICES if os.path.exists(d)]
    with contextlib.suppress(OSError):
        found += sorted(
            f"/dev/{n}"
            for n in os.listdir("/dev")
            if n.startswith("nvidia") and n[6:].isdigit() and (only is None or int(n[6:]) in only)
        )
    return found


def base_args() -> tuple[str, ...]:
    """The namespaces and mounts every sandbox has but ``/etc`` (see the module's docstring),
    each mount after the folder it goes in (``/tmp`` before a Python that lives below it)."""
    mounts: list[tuple[str, ...]] = [("--ro-bind", "/usr", "/usr")]
    for name in ROOT_LINKS:
        path = f"/{name}"
        if os.path.islink(path):
            mounts.append(("--symlink", os.readlink(path), path))
        elif os.path.isdir(path):
            mounts.append(("--ro-bind", path, path))
    mounts += [("--proc", "/proc"), ("--dev", "/dev"), ("--tmpfs", "/tmp"), ("--tmpfs", APP_HOME)]
    for path in _outermost(_python_dirs()):
        if not _within(path, "/usr"):
            mounts.append(("--ro-bind", path, path))
    mounts.sort(key=lambda m: m[-1])
    args = ["--unshare-pid", "--unshare-ipc", "--unshare-cgroup-try", "--new-session"]
    args += ["--die-with-parent", "--cap-drop", "ALL"]
    return (*args, *(a for m in mounts for a in m))


def detect(
    allowed_paths: Sequence[str | Path] = (),
    private: Sequence[str | Path] = (),
    path: str | None = None,
    *,
    state_dir: Path,
    app_user: str = DEFAULT_APP_USER,
    reach: Sequence[Path] = (),
) -> Isolation:
    """How apps will run here, said in the agent's log: a sandbox when ``bwrap`` (looked up
    on ``path``, default ``PATH``) runs a probe in one; else, for an agent running as root,
    as ``app_user`` when that user can reach the folders in ``reach`` (the agent's work
    folder); else neither. ``state_dir`` keeps the sandbox's ``/etc``."""
    allowed = tuple(os.path.realpath(p) for p in allowed_paths)
    priv = tuple(os.path.realpath(p) for p in private)
    why = _why_no_sandbox(path)
    if why is None:
        bwrap = shutil.which("bwrap", path=path)
        assert bwrap is not None
        base = base_args()
        etc = EtcSnapshot(state_dir / "sandbox")
        why = _probe([bwrap, *base, "--ro-bind", etc.path(), "/etc", "--"], "bubblewrap")
        if why is None:
            log.info("apps run sandboxed (bubblewrap: %s)", bwrap)
            return Isolation(SANDBOXED, "", bwrap, base, allowed, priv, etc)
    if os.geteuid() == 0:
        run_as, why_not = _app_user(app_user, path, reach)
        if run_as is not None:
            note = (
                f"apps are not in a sandbox ({why}): each runs as the unprivileged user "
                f"{run_as.name!r} (uid {run_as.uid}), which cannot read the agent's files"
            )
            log.warning("%s", note)
            return Isolation(APP_USER, note, None, (), allowed, priv, run_as=run_as)
        why = f"{why}; {why_not}"
    note = f"apps are NOT sandboxed: {why}; they can read what the agent's user can"
    log.warning("%s", note)
    return Isolation(NO_SANDBOX, note, None, (), allowed, priv)


def unsandboxed(
    allowed_paths: Sequence[str | Path] = (), private: Sequence[str | Path] = ()
) -> Isolation:
    """No sandbox asked for (the agent runs with ``--no-sandbox``): said in its log, its
    hello, ``appyard agent list`` and the agents page, like a sandbox that cannot be made."""
    note = (
        "apps are NOT sandboxed: the agent runs with --no-sandbox; "
        "they can read what the agent's user can"
    )
    log.warning("%s", note)
    allowed = tuple(os.path.realpath(p) for p in allowed_paths)
    priv = tuple(os.path.realpath(p) for p in private)
    return Isolation(NO_SANDBOX, note, None, (), allowed, priv)


def _why_no_sandbox(path: str | None) -> str | None:
    if not sys.platform.startswith("linux"):
        return "bubblewrap runs on Linux only"
    if shutil.which("bwrap", path=path) is None:
        return "no bwrap on PATH (install bubblewrap)"
    return None


def _app_user(name: str, path: str | None, reach: Sequence[Path]) -> tuple[RunAs | None, str]:
    """The user apps run as, when it exists (else ``nobody``), ``setpriv`` is there and a
    probe run as that user reaches ``reach``; else None and why not."""
    setpriv = shutil.which("setpriv", path=path)
    if setpriv is None:
        return None, "no setpriv on PATH to run apps as another user (install util-linux)"
    entry = None
    for candidate in dict.fromkeys((name, "nobody")):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(candidate)
            break
    if entry is None or entry.pw_uid == 0:
        return None, f"no unprivileged user {name!r} to run apps as (useradd --system {name})"
    run_as = RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, setpriv)
    folders = [str(p) for p in reach]
    check = "import os, sys; [os.stat(p) for p in sys.argv[1:]]"
    why = _probe(run_as.command([sys.executable, "-I", "-S", "-c", check, *folders]), "setpriv")
    if why is not None:
        return None, (
            f"user {entry.pw_name!r} cannot run the agent's Python or reach its work folder "
            f"{', '.join(folders)} ({why}); give --work-dir a folder it can pass through "
            "(mode 0711 on it and each folder above)"
        )
    return run_as, ""


def _probe(prefix: Sequence[str], who: str) -> str | None:
    """Run the agent's Python once behind ``prefix`` (a sandbox, another user); why it failed,
    or None. A prefix that ends the command line with ``--`` gets a bare ``pass`` run."""
    cmd = [*prefix]
    if cmd[-1] == "--":
        cmd += [sys.executable, "-I", "-S", "-c", "pass"]
    try:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{who} failed its probe: {e}"
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return f"{who} failed its probe (exit {done.returncode}: {err[0][:300]})"
    return None

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

Without a usable bubblewrap (none on ``PATH``, or the probe at the agent's start fails) apps
run as the agent's user with nothing of the above (mode ``none``); the agent says so at start
and in its hello, and the server shows it (``appyard agent list``, the agents page).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import appyard
from appyard.agent.cache import PrepareError
from appyard.schemas.manifest import SandboxSpec

log = logging.getLogger("appyard.agent")

#: how an agent runs apps, as its hello says
Mode = Literal["sandboxed", "none"]
#: the app's processes are in a bubblewrap sandbox
SANDBOXED: Mode = "sandboxed"
#: no sandbox: the app runs as the agent's user and sees what that user sees
NO_SANDBOX: Mode = "none"
#: the app's HOME inside the sandbox (a private, empty folder in memory)
APP_HOME = "/home/app"
#: top-level links or folders of a merged-/usr system, taken as the host has them
ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
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


@dataclass(frozen=True)
class Isolation:
    """How this agent isolates its apps: ``mode`` (``sandboxed`` or ``none``), and why."""

    mode: Mode
    note: str = ""
    bwrap: str | None = None
    #: the mounts every sandbox has, as bubblewrap arguments
    base: tuple[str, ...] = ()
    #: folders an app may ask to read (``sandbox.read_only_paths``)
    allowed_paths: tuple[str, ...] = ()
    #: folders an app may never see, whatever is allowed (the agent's own)
    private: tuple[str, ...] = field(default_factory=tuple)

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
    ) -> list[str]:
        """The command that runs ``argv`` in the app's sandbox (``argv`` itself without one).

        ``env`` is the app's environment: its ``HOME`` and ``TMPDIR`` become the sandbox's.
        PrepareError when the manifest asks for a path the agent does not give apps.
        """
        spec = spec or SandboxSpec()
        extra = self._extra_paths(spec.read_only_paths)
        if not self.sandboxed or self.bwrap is None:
            return list(argv)
        _check_program(argv, env)
        env["HOME"] = APP_HOME
        env["TMPDIR"] = "/tmp"
        args = [self.bwrap, *self.base]
        ro = _outermost([*extra, str(app_dir), *self._venv_dirs(python)])
        mounts = [("--ro-bind", p) for p in ro] + [("--bind", str(work))]
        if spec.gpu:
            mounts += [("--dev-bind", d) for d in _gpu_devices()]
            if os.path.isdir("/sys"):
                mounts.append(("--ro-bind", "/sys"))
        for flag, path in sorted(mounts, key=lambda m: m[1]):  # a folder before what is in it
            args += [flag, path, path]
        if not spec.network:
            args.append("--unshare-net")
        args += ["--chdir", str(work), "--", *argv]
        return args

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


def _gpu_devices() -> list[str]:
    found = [d for d in GPU_DEVICES if os.path.exists(d)]
    with contextlib.suppress(OSError):
        found += sorted(
            f"/dev/{n}" for n in os.listdir("/dev") if n.startswith("nvidia") and n[6:].isdigit()
        )
    return found


def base_args() -> tuple[str, ...]:
    """The namespaces and mounts every sandbox has (see the module's docstring), each mount
    after the folder it goes in (``/tmp`` before a Python that lives below it)."""
    mounts: list[tuple[str, ...]] = [("--ro-bind", "/usr", "/usr")]
    for name in ROOT_LINKS:
        path = f"/{name}"
        if os.path.islink(path):
            mounts.append(("--symlink", os.readlink(path), path))
        elif os.path.isdir(path):
            mounts.append(("--ro-bind", path, path))
    for name in ETC:
        path = f"/etc/{name}"
        if os.path.exists(path):
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
) -> Isolation:
    """How apps will run here: a sandbox when ``bwrap`` (looked up on ``path``, default
    ``PATH``) runs a probe in one, else none; said in the agent's log either way."""
    allowed = tuple(os.path.realpath(p) for p in allowed_paths)
    priv = tuple(os.path.realpath(p) for p in private)
    why = _why_no_sandbox(path)
    if why is None:
        bwrap = shutil.which("bwrap", path=path)
        assert bwrap is not None
        base = base_args()
        why = _probe(bwrap, base)
        if why is None:
            log.info("apps run sandboxed (bubblewrap: %s)", bwrap)
            return Isolation(SANDBOXED, "", bwrap, base, allowed, priv)
    note = f"apps are NOT sandboxed: {why}; they can read what the agent's user can"
    log.warning("%s", note)
    return Isolation(NO_SANDBOX, note, None, (), allowed, priv)


def unsandboxed(
    allowed_paths: Sequence[str | Path] = (), private: Sequence[str | Path] = ()
) -> Isolation:
    """No sandbox asked for (the agent runs without ``--sandbox``): said in its log, its hello,
    ``appyard agent list`` and the agents page, like a sandbox that cannot be made."""
    note = "apps are NOT sandboxed: the agent runs without --sandbox; they can read what the agent's user can"
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


def _probe(bwrap: str, base: Sequence[str]) -> str | None:
    """Run the agent's Python in a sandbox once; why it failed, or None."""
    cmd = [bwrap, *base, "--", sys.executable, "-I", "-S", "-c", "pass"]
    try:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap failed its probe: {e}"
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return f"bubblewrap failed its probe (exit {done.returncode}: {err[0][:300]})"
    return None

"""From job to app: what a supervisor does between its start and the app's spawn.

A supervisor starts with nothing to do (the agent starts it ahead of a task, or on the spot),
does what it can while it waits (subreaper flag, own start time, its locale's answer), reads
its job, then becomes the task's supervisor: stdout/stderr go to the task's
``supervisor.log``, its cwd is the task folder, and the app gets the job's environment as it
is, with what an interpreter's start-up would have done to it (the PEP 538 ``LC_CTYPE``
coercion). EOF on the job pipe before a whole job (the agent exited or is gone) ends it at
once, with code 0 and no file written.
"""

from __future__ import annotations

import os
import sys
from _collections_abc import Mapping  # loaded with os (collections.abc is not)

from .app import Supervisor
from .job import Job, decode_job, read_job
from .procs import become_subreaper, own_start_time

#: what an interpreter tries, in this order, when it finds the C locale (PEP 538)
COERCION_TARGETS = ("C.UTF-8", "C.utf8", "UTF-8")
#: what of the C environment the supervisor's own libc reads: ``posix_spawnp`` the PATH,
#: ``setlocale`` the locale variables
C_ENV = ("PATH", "LC_ALL", "LC_CTYPE", "LANG", "LOCPATH")

#: what ``coerce_c_locale`` found for this process's own environment (whose locale it left
#: set): [(the locale variables of that environment, the LC_CTYPE it coerced them to or None)]
_locale_known: list[tuple[tuple[str | None, ...], str | None]] = []


def coerce_c_locale(env: dict[str, str]) -> None:
    """Do to ``env`` what an interpreter started with it does to its environment (PEP 538).

    Unless ``LC_ALL`` is set, an interpreter that finds LC_CTYPE to be the C locale sets
    ``LC_CTYPE`` to the first of ``COERCION_TARGETS`` that exists, and the app inherits it;
    the supervisor started with another environment, so it asks libc the same question
    about the app's one. The supervisor's own locale is left as that interpreter would leave it.
    """
    if env.get("LC_ALL"):
        return
    try:
        import _locale as loc
    except ImportError:  # pragma: no cover - other Python implementations
        return
    error: type[Exception] = loc.Error  # type: ignore[attr-defined]  # not in typeshed
    loc.setlocale(loc.LC_CTYPE, "C")  # where a new process starts
    try:  # noqa: SIM105 - contextlib would cost imports at start
        loc.setlocale(loc.LC_CTYPE, "")  # from the environment, set to the app's just before
    except error:
        pass  # an unknown locale name: it stays "C"
    if loc.setlocale(loc.LC_CTYPE, None) != "C":
        return
    for target in COERCION_TARGETS:
        try:
            loc.setlocale(loc.LC_CTYPE, target)
        except error:
            continue
        if loc.nl_langinfo(loc.CODESET):
            env["LC_CTYPE"] = target
            return
    loc.setlocale(loc.LC_CTYPE, "C")


def locale_key(env: Mapping[str, str]) -> tuple[str | None, ...]:
    """What ``coerce_c_locale`` depends on in an environment."""
    return tuple(env.get(name) for name in C_ENV[1:])


def know_own_locale() -> None:
    """Run ``coerce_c_locale`` for this process's own environment ahead of any job (once).

    A job whose environment has the same locale variables (an app's environment is the
    agent's, as the supervisor's is, unless the app sets them) then finds the answer here
    and this process's locale already set as it would set it: no ``setlocale`` calls between
    the job and the app's spawn.
    """
    if not _locale_known:
        env = dict(os.environ)
        before = env.get("LC_CTYPE")
        coerce_c_locale(env)
        after = env.get("LC_CTYPE")
        _locale_known.append((locale_key(os.environ), after if after != before else None))


def become(job: Job, env: dict[str, str]) -> None:
    """Turn a supervisor that waited into its task's: output, cwd, the app's environment.

    The app gets ``env`` as it is (``Supervisor.env``); of the supervisor's own environment
    only what its libc reads (``C_ENV``) is made the app's, which is all that an interpreter
    started with the app's environment would change here (replacing all of it costs about a
    millisecond).
    """
    fd = os.open(job.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(job.task_dir)
    for name in C_ENV:
        value = env.get(name)
        if value is None:
            os.unsetenv(name)
        else:
            os.putenv(name, value)
    known = _locale_known[0] if _locale_known else None
    if known is not None and known[0] == locale_key(env):
        if known[1] is not None:
            env["LC_CTYPE"] = known[1]
    else:
        coerce_c_locale(env)


def run_job(job_fd: int, status_fd: int, wake_r: int) -> int:
    """Wait for the job on ``job_fd``, then supervise its app; the supervisor's exit code."""
    os.set_inheritable(status_fd, False)  # the app must not hold the agent's pipes open
    os.set_inheritable(job_fd, False)
    # now, while there is no task: off the way to the app's spawn
    become_subreaper()
    own_start_time()
    know_own_locale()
    body = read_job(job_fd, wake_r)
    os.close(job_fd)
    if body is None:
        return 0  # no task for us: the agent exited (or died)
    try:
        job = decode_job(body)
    except ValueError as e:  # an agent of another version?
        print(f"supervisor: bad job: {e}", file=sys.stderr)
        return 2
    env = dict(job.env)
    become(job, env)
    sup = Supervisor(job.task_dir, job.cwd, job.grace, status_fd, env, job.sandboxed)
    sup.watch_usage(job.usage_s, job.memory_limit_mb)
    return sup.run(list(job.argv), wake_r)

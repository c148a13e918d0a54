"""The per-task supervisor: a tiny shim that owns one app process (like conmon/containerd-shim).

Why it exists: apps survive an agent restart, so the agent is not the app's parent. The
supervisor is; it runs in its own session, so it outlives the agent (and the terminal the
agent runs in), and it keeps the things that must not be lost when the agent dies:

- the app's output: stdout and stderr lines are appended to ``log.jsonl`` as one JSON object
  per line ``{"t": "<iso utc>", "level": "...", "text": "..."}``, written at once (no buffer);
- the app's exit status: ``exit.json`` (tmp + rename), with the exit code (``-N`` when killed
  by signal N), the end time, whether a stop was asked for, whether SIGKILL was needed, and
  ``spawned: false`` with ``error`` and code 127 when the program could not be executed;
- the stop protocol: SIGTERM to the supervisor sends SIGTERM to the app's process group,
  waits the grace period, then SIGKILLs the group. When the app itself exits, whatever is
  left in its group is SIGKILLed at once.
- the app's descendants: the supervisor is a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``)
  so a process that left the app's group (``setsid``, a double-fork daemon) is reparented to
  it, not to init; once the app has exited, every descendant still there is SIGKILLed and
  reaped too, so nothing of the task outlives it (nor holds its output pipes open).

Usage (the agent runs ``supervisor_main.py`` by file path with ``-I -S`` so that it starts in a
few ms; the package imports nothing but built-in modules: no ``json``, no ``signal`` (both pull
in ``re``/``enum``), and nothing of appyard: it is imported as the top-level package
``supervisor`` there, and as ``appyard.agent.supervisor`` by the agent)::

    python -I -S supervisor_main.py --job-fd N --status-fd M   (waits for its job, below)
    python -I -S supervisor_main.py --zygote-fd N              (forks those, below)
    python -m appyard.agent.supervisor ...                     (works too, a bit slower)

Every supervisor gets its task the same way: it starts with nothing to do, and reads its job
(task folder, argv, the app's whole environment, cwd, grace, usage sampling; see ``job``) from
``--job-fd``, the read end of a pipe from the agent. The agent starts one ahead of a task ("warm"), or, when
none is waiting, one on the spot and writes it the job at once ("cold"); the supervisor cannot
tell the two apart. ``--status-fd`` is the write end of a pipe from the agent: one line,
``{"pid": P, "start": S}`` the moment the app is spawned (or ``{"error": "...", "exit_code":
127}`` when it cannot be executed), then it is closed, so the agent learns "started" without
polling. The same facts go to ``pids.json`` for an agent that was not there to read the pipe.
Exit codes of the supervisor itself: 0 when it did its job (or the agent left before giving
it one), 2 on a usage error or a job it cannot read.

The zygote (``--zygote-fd N``, one per agent) forks supervisors that wait for their jobs, so a
task costs a fork instead of an interpreter start-up (see ``zygote``).

Modules, one job each: ``main`` (arguments, signals at start), ``job`` (the job's format, both
ends), ``start`` (from job to app: what a supervisor does before the spawn), ``app`` (the app
process: spawn, watch, stop protocol, exit status), ``lines`` (output bytes to log records),
``files`` (the task's files and the JSON in them), ``procs`` (process identity, the subreaper,
descendants), ``signals`` (the stop flag and the wakeup pipe), ``usage`` (samples of what the
app uses, its memory limit), ``zygote``.
"""

"""What an app runs: its command and its environment, from its manifest and its assignment.

All of it reaches the app through the supervisor's job (``supervisor/job.py``), exactly as
computed here: the supervisor adds nothing to either but what an interpreter's start-up would
(the PEP 538 locale coercion).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from appyard.agent.cache import PrepareError
from appyard.schemas.agents import TaskAssignment
from appyard.schemas.manifest import Manifest

#: a leading ``python``, ``python3`` or ``python3.11`` in an entrypoint means "the app's python"
PYTHON_WORD = re.compile(r"^python(\d+(\.\d+)?)?$")
ENV_REF = re.compile(r"\$(\w+)|\$\{(\w+)\}")
#: variables of the agent's own environment that the app must not inherit
_NOT_INHERITED = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "VIRTUAL_ENV", "CONTEXT")
_NOT_INHERITED_PREFIXES = ("APPYARD_", "context.", "modal.state.", "CONTEXT_")


def _expand(word: str, env: Mapping[str, str]) -> str:
    """``$NAME`` / ``${NAME}`` from the app's env (what a shell would do, and nothing more)."""
    return ENV_REF.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), word)


#: (app folder, relative path) -> the resolved path, inside the folder. A release folder does
#: not change once unpacked (and holds no links), so each is resolved once, not per task (a
#: ``resolve`` is an ``lstat`` per component of the path and of the folder's)
_resolved: dict[tuple[Path, str], Path] = {}


def _inside(app_dir: Path, rel: str, what: str) -> Path:
    path = _resolved.get((app_dir, rel))
    if path is None:
        path = (app_dir / rel).resolve()
        if not path.is_relative_to(app_dir.resolve()):
            raise PrepareError(f"manifest {what} {rel!r} points outside the app folder")
        if len(_resolved) >= 1024:
            _resolved.clear()
        _resolved[(app_dir, rel)] = path
    if not path.is_file():
        raise PrepareError(f"manifest {what} {rel!r} is not a file in the app folder")
    return path


def app_command(
    manifest: Manifest, app_dir: Path, python: str, env: Mapping[str, str]
) -> list[str]:
    """The app's argv, run without a shell.

    ``entrypoint`` (a command line, split into words once, when the manifest is parsed) wins
    over ``main_script``. A leading ``python``/``python3`` becomes ``python`` (the real
    interpreter: the agent's own or the app's venv; never a PATH lookup, which may hit a slow
    shim); ``$VAR`` words are expanded from the app's env (e.g. ``$APP_DIR``, ``$APP_PORT``);
    a relative program path such as ``./run.sh`` is taken from the app folder.
    ``main_script`` is a file in the app folder: ``[python, path]`` for ``.py``, else the
    file itself is executed.
    """
    words = manifest.command_words
    script = manifest.main_script
    if words:
        argv = [_expand(w, env) for w in words]
    elif script is not None and script.strip():
        path = _inside(app_dir, script, "main_script")
        return [python, str(path)] if path.suffix == ".py" else [str(path)]
    else:
        raise PrepareError("the manifest names no main_script and no entrypoint: nothing to run")
    if PYTHON_WORD.match(argv[0]):
        argv[0] = python
    elif "/" in argv[0] and not os.path.isabs(argv[0]):
        argv[0] = str(_inside(app_dir, argv[0], "entrypoint program"))
    return argv


def inherited_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The agent's environment (or ``base``) minus its own settings: ``APPYARD_*`` (its token
    among them), Python and venv variables, and the app variables an agent may have itself."""
    src = os.environ if base is None else base
    return {
        k: v
        for k, v in src.items()
        if k not in _NOT_INHERITED and not k.startswith(_NOT_INHERITED_PREFIXES)
    }


def _env_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _env_ok(key: str, value: str) -> bool:
    return bool(key) and "=" not in key and "\0" not in key and "\0" not in value


def app_env(
    a: TaskAssignment,
    *,
    server: str,
    agent_id: int,
    app_dir: Path,
    port: int,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The app's environment (DESIGN.md, "the app contract").

    ``inherited_env``, then the reference agent's flattened ``modal.state.<key>`` and
    ``context.<key>`` (strings as they are, anything else as JSON), the target's
    ``PROJECT_ID``/``DATASET_ID``/``FOLDER``/``FILE``, then ours, which nothing overrides.
    """
    env = inherited_env(base)
    flat: list[tuple[str, Any]] = [(f"modal.state.{k}", v) for k, v in a.state.items()]
    flat += [(f"context.{k}", v) for k, v in a.context.items()]
    for key, value in flat:
        text = _env_value(value)
        if _env_ok(key, text):
            env[key] = text
    for key, text in a.env.items():
        if _env_ok(key, text):
            env[key] = text
    if a.gpus is not None:
        # exactly the GPUs placement gave it (none: none; CUDA then sees no device)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g.index) for g in a.gpus)
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(g.uuid for g in a.gpus) or "void"
    env.update(
        {
            "SERVER_ADDRESS": server,
            "API_TOKEN": a.token,
            "TASK_ID": str(a.task_id),
            "TEAM_ID": str(a.team_id),
            "WORKSPACE_ID": str(a.workspace_id),
            "AGENT_ID": str(agent_id),
            "USER_ID": str(a.user_id),
            "APP_NAME": a.app_name,
            "MODAL_STATE": json.dumps(a.state),
            "CONTEXT": json.dumps(a.context),
            "LOG_LEVEL": a.log_level,
            "APP_PORT": str(port),
            # where the app's web page is, through the server (its links go under it)
            "APP_BASE_PATH": f"/apps/{a.task_id}/",
            "APP_DIR": str(app_dir),
            # the app folder is importable (``python -m src.main``, ``from src import x``)
            "PYTHONPATH": str(app_dir),
            "PYTHONUNBUFFERED": "1",  # prints reach the log at once
        }
    )
    return env


def free_port() -> int:
    """A TCP port free right now on all interfaces, for a serving app (``APP_PORT``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])

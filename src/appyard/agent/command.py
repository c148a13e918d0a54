"""The agent's command line: ``python -m appyard.agent`` (and what ``appyard agent`` calls).

SIGTERM or SIGINT ends the agent *without* stopping its apps: they run on under their
supervisors, and the next agent started with the same token re-adopts them. With
``--stop-apps-on-exit`` (what ``appyard up`` uses on Ctrl-C) every app is stopped with the stop
protocol and reported before the agent exits. SIGHUP always leaves the apps running, flag or
not: it is what the agent of ``appyard up`` gets when ``up`` itself dies (killed, out of
memory), and what ``up --keep-apps`` sends, so that only a deliberate stop stops apps.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from appyard.agent.exit_codes import RET_CONFIG
from appyard.agent.loop import AgentConfig, run_agent
from appyard.agent.sandbox import DEFAULT_APP_USER
from appyard.agent.usage import DEFAULT_INTERVAL_S
from appyard.errors import ConfigurationError
from appyard.schemas.agents import MAX_LABELS, parse_label, parse_labels

log = logging.getLogger("appyard.agent")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="appyard-agent", description="Run appyard tasks on this machine."
    )
    p.add_argument(
        "--server",
        default=os.environ.get("APPYARD_SERVER"),
        help="server address (env APPYARD_SERVER)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("APPYARD_AGENT_TOKEN"),
        help="the agent's token (env APPYARD_AGENT_TOKEN)",
    )
    p.add_argument("--slots", type=int, default=4, help="apps run at once (default 4)")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="default: $APPYARD_HOME/agent-<id> (APPYARD_HOME: ~/.appyard)",
    )
    p.add_argument(
        "--stop-apps-on-exit",
        action="store_true",
        help="stop every app when the agent is asked to exit (default: leave them)",
    )
    p.add_argument(
        "--app-path",
        type=Path,
        action="append",
        default=[],
        help="a folder that apps may ask to read in their sandbox (manifest "
        "sandbox.read_only_paths); repeat for more (default: none)",
    )
    p.add_argument(
        "--sandbox",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("APPYARD_AGENT_SANDBOX", "1") not in ("", "0"),
        help="run each app in a bubblewrap sandbox, or, as root without one, as --app-user "
        "(docs/security.md); --no-sandbox: neither, apps see what the agent's user sees "
        "(default: on; env APPYARD_AGENT_SANDBOX=0 turns it off)",
    )
    p.add_argument(
        "--app-user",
        default=os.environ.get("APPYARD_AGENT_APP_USER", DEFAULT_APP_USER),
        help=f"the unprivileged user apps run as when the agent runs as root and no sandbox "
        f"can be made (default {DEFAULT_APP_USER}, else nobody; env APPYARD_AGENT_APP_USER)",
    )
    p.add_argument(
        "--label",
        type=_label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a label of this agent, reported with its machine (e.g. gpu=a100, zone=eu); "
        f"repeat for more (at most {MAX_LABELS})",
    )
    p.add_argument(
        "--usage-interval",
        type=_interval,
        default=os.environ.get("APPYARD_AGENT_USAGE_INTERVAL", str(DEFAULT_INTERVAL_S)),
        metavar="SECONDS",
        help=f"seconds between two samples of what each app uses (CPU, memory, GPU), "
        f"0.1 to 3600, or 0 for none (default {DEFAULT_INTERVAL_S:g}; env "
        "APPYARD_AGENT_USAGE_INTERVAL); a memory limit is kept every second at least",
    )
    p.add_argument("--log-level", default="INFO", help="agent log level (default INFO)")
    return p


def _interval(text: str) -> float:
    """argparse check of ``--usage-interval``: a clear usage error (exit 2) for a bad one."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value == 0 or 0.1 <= value <= 3600):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds from 0.1 to 3600, or 0 for no sampling "
            "(give it with --usage-interval or APPYARD_AGENT_USAGE_INTERVAL)"
        )
    return value


def _label(text: str) -> str:
    """argparse check of one ``--label``: a clear usage error (exit 2) for a bad one."""
    try:
        parse_label(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def setup_logging(level: str = "INFO") -> None:
    """One line per event on stderr."""
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # one line per request would drown the agent's own events
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Run an agent until SIGTERM/SIGINT; returns the process exit code (``exit_codes``)."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if not args.server or not args.token:
        log.error("give --server and --token (or APPYARD_SERVER and APPYARD_AGENT_TOKEN)")
        return RET_CONFIG
    if args.slots < 1:
        log.error("--slots must be at least 1")
        return RET_CONFIG
    try:
        labels = parse_labels(args.label)
    except ValueError as e:
        log.error("--label: %s", e)
        return RET_CONFIG
    config = AgentConfig(
        server=args.server,
        token=args.token,
        slots=args.slots,
        work_dir=args.work_dir,
        stop_apps_on_exit=args.stop_apps_on_exit,
        app_paths=tuple(args.app_path),
        sandbox=args.sandbox,
        app_user=args.app_user,
        labels=labels,
        usage_interval_s=args.usage_interval,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: the agent stops", signal.Signals(signum).name)
        stop.set()

    def on_detach(signum: int, frame: FrameType | None) -> None:
        log.info("SIGHUP: the agent exits and leaves its apps running (to be re-adopted)")
        config.stop_apps_on_exit = False
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_detach)
    try:
        return run_agent(config, stop)
    except ConfigurationError as e:
        log.error("%s", e)
        return RET_CONFIG

"""A serving app for the tests: its handlers echo, fail, sleep, block until released, and
answer large bodies (several tunnel chunks each way)."""

import os
import threading
import time

import appyard as ay

session = ay.AppSession.from_env()
gates: dict[str, threading.Event] = {}
entered: dict[str, threading.Event] = {}
lock = threading.Lock()


def _gate(table: dict[str, threading.Event], name: str) -> threading.Event:
    with lock:
        return table.setdefault(name, threading.Event())


@session.handler("echo")
def echo(state, context):
    return {"state": state, "context": context, "task_id": int(os.environ["TASK_ID"])}


@session.handler("fail")
def fail(state):
    raise RuntimeError(f"asked to fail: {state.get('why', 'no reason')}")


@session.handler("sleep")
def sleep(state):
    time.sleep(float(state["s"]))
    return {"slept": state["s"]}


@session.handler("block")
def block(state):
    """Waits until ``release`` with the same name is sent (the test's own marker)."""
    name = state["name"]
    _gate(entered, name).set()
    _gate(gates, name).wait(300)
    return {"released": name}


@session.handler("entered")
def was_entered(state):
    """Whether a ``block`` of this name is waiting now (the test waits on this)."""
    return {"entered": _gate(entered, state["name"]).is_set()}


@session.handler("release")
def release(state):
    _gate(gates, state["name"]).set()
    return {"released": state["name"]}


@session.handler("big")
def big(state):
    """``n`` bytes of text back, and the length of what was sent."""
    return {"data": "x" * int(state["n"]), "got": len(state.get("payload", ""))}


def _hold(ready_marker: str, exit_marker: str | None) -> None:
    """Serve, unready, until the test creates ``ready_marker`` (then say ready and serve on) or
    ``exit_marker`` (then exit with the code written in it, never having been ready); paths
    relative to the app's work folder, its cwd."""
    session.serve()
    while True:
        if os.path.exists(ready_marker):
            session.serve_forever()
            return
        if exit_marker and os.path.exists(exit_marker):
            with open(exit_marker) as f:
                raise SystemExit(int(f.read().strip() or 0))
        time.sleep(0.02)


if session.state.get("ready_marker"):
    _hold(session.state["ready_marker"], session.state.get("exit_marker"))
elif session.state.get("ready", True):
    session.serve_forever()
else:
    session.serve()  # serving, but never says it is ready
    threading.Event().wait()

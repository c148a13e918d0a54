"""Echo model: a serving app that answers requests sent into its session.

Start it, wait until it is ready, then send it requests::

    session = api.app.start(agent_id, module_id=module_id, params={"label": "cat"})
    api.app.wait_until_ready_for_api_calls(session.task_id)
    api.task.send_request(session.task_id, "predict", {"inputs": ["a", "bb"]})
    # {"model": "echo-model", "predictions": [{"input": "a", "label": "cat", "score": ...}, ...]}
"""

import time

import appyard as ay

session = ay.AppSession.from_env()
label = str(session.state.get("label", "echo"))
served = 0


@session.handler("predict")
def predict(state, context):
    """A label and a score per input (the score: how much of the input is letters)."""
    global served
    inputs = state.get("inputs")
    if not isinstance(inputs, list):
        raise ValueError('send {"inputs": [...]}: a list of inputs to label')
    served += 1
    predictions = []
    for item in inputs:
        text = str(item)
        score = sum(c.isalpha() for c in text) / len(text) if text else 0.0
        predictions.append({"input": item, "label": label, "score": round(score, 3)})
    return {"model": "echo-model", "predictions": predictions}


@session.handler("echo")
def echo(state, context):
    """What it was sent, as it got it."""
    return {"state": state, "context": context}


@session.handler("info")
def info(state):
    """What it is and how many predictions it made."""
    return {
        "model": "echo-model",
        "label": label,
        "served": served,
        "commands": sorted(session.handlers),
    }


time.sleep(float(session.state.get("warmup_s", 0)))  # "loading the model"
print(f"echo model ready: label {label!r}, serving on port {session.port}", flush=True)
session.serve_forever()

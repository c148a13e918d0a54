import time

began = time.time()
import json  # noqa: E402
import os  # noqa: E402

stamp = json.loads(os.environ["MODAL_STATE"]).get("stamp")
if stamp:
    with open(stamp, "w") as f:
        json.dump({"began": began, "ends": time.time()}, f)
os._exit(0)

"""Test app: reports through ``AsyncApi`` with its task token (progress, a team file as an
output, outputs, readiness), then serves until it is stopped; with ``fail`` it exits 3 at once."""

import asyncio
import sys
import tempfile

import appyard as ay


async def main() -> int:
    task_id, team_id = ay.env.task_id(), ay.env.team_id()
    if ay.env.modal_state().get("fail"):
        print("giving up", flush=True)
        return 3
    async with ay.AsyncApi() as api:
        for step in range(1, 4):
            await api.task.set_progress(task_id, step, 3, "counting")
            print(f"step {step}", flush=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(f"report of task {task_id}\n")
        path = f"/reports/{task_id}.txt"
        await api.file.upload(team_id, f.name, path)
        await api.task.set_output_file(task_id, "report", path)
        await api.task.set_outputs(task_id, {"steps": 3})
        print("ready", flush=True)  # before it says so: its last line is in the log by then
        await api.task.set_ready(task_id)
        await asyncio.sleep(120)  # serves until it is stopped
    return 0


sys.exit(asyncio.run(main()))

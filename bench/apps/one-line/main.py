import os

task = os.environ["TASK_ID"]
marks = os.environ.get("modal.state.marks")  # noqa: SIM112 - the agent names it so
if marks:  # one byte per run of this task: a task run twice shows as two
    fd = os.open(os.path.join(marks, task), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, b"1")
    os.close(fd)
print(f"ran task {task}")

"""A long-lived ("zombie") app end to end: the bundled project viewer is started by a real
agent, says it is ready (it stays ``started``), answers HTTP, and leaves nothing behind when stopped."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image

import appyard as ay
from tests.e2e.conftest import Env
from tests.support import alive, processes_of, wait_for

S = ay.Status
APP = Path(ay.__file__).parent / "ecosystem" / "project-viewer"
BOX = "#E53935"
GREY = (200, 200, 200)


def _png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def test_the_viewer_serves_until_stopped(env: Env) -> None:
    api, world = env.api, env.world
    module_id = world.admin.publish(APP)["module_id"]
    project = api.project.create(world.workspace_id, "Street <scenes>")
    api.project.update_meta(
        project.id, {"classes": [{"name": "box", "shape": "rectangle", "color": BOX}]}
    )
    ds = api.dataset.create(project.id, "day & night")
    first = api.image.upload_bytes(ds.id, "a&b <1>.png", _png((40, 30), GREY))
    second = api.image.upload_bytes(ds.id, "plain.png", _png((20, 20), GREY))
    box = {"type": "rectangle", "left": 5, "top": 6, "right": 30, "bottom": 20}
    api.annotation.upload_json(
        first.id,
        {"size": {"width": 40, "height": 30}, "objects": [{"class": "box", "geometry": box}]},
    )
    other = api.project.create(world.workspace_id, "other")
    other_ds = api.dataset.create(other.id, "ds")
    foreign = api.image.upload_bytes(other_ds.id, "x.png", _png((8, 8), GREY))

    params = api.app.get_ecosystem_module_info(module_id).get_arguments(images_project=project.id)
    session = api.app.start(
        agent_id=env.agent_id, module_id=module_id, workspace_id=world.workspace_id, params=params
    )
    tid = session.task_id
    assert api.app.wait_until_ready_for_api_calls(tid, 60, 1)
    task = api.task.get_info_by_id(tid)
    url = task["ready_url"]
    assert url and url.startswith("http://127.0.0.1:") and url.endswith("/")
    # the log is shipped on its own schedule: the line printed before ready() may come later
    serving: str = wait_for(
        lambda: next(
            (ln.text for ln in api.task.logs(tid) if ln.text.startswith("serving project")), ""
        ),
        30,
        "the viewer's serving line in the task log",
    )
    assert f"at {url}" in serving
    # the pid it prints is of its sandbox's own PID namespace: find its processes from outside
    assert re.search(r"pid (\d+)$", serving), serving
    pids = processes_of(tid, world.server.url)
    assert pids and all(alive(p) for p in pids)

    with httpx.Client(base_url=url, timeout=30) as http:
        health = http.get("/health")
        assert health.status_code == 200 and health.json() == {"status": "ok"}

        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "<h1>Street &lt;scenes&gt;</h1>" in page.text
        assert "day &amp; night (2 images)" in page.text
        assert "a&amp;b &lt;1&gt;.png" in page.text
        for im in (first, second):
            assert f"href='/apps/{tid}/images/{im.id}.png'" in page.text  # APP_BASE_PATH
        assert f"/images/{foreign.id}.png" not in page.text

        drawn = http.get(f"/images/{first.id}.png")
        assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/png"
        img = Image.open(io.BytesIO(drawn.content))
        assert img.format == "PNG" and img.size == (40, 30)
        rgb = img.convert("RGB")
        red = (0xE5, 0x39, 0x35)
        assert rgb.getpixel((5, 10)) == red  # the outline: the class colour itself
        assert rgb.getpixel((30, 20)) == red
        inside = rgb.getpixel((15, 12))  # the fill: the class colour over the image
        assert isinstance(inside, tuple)
        for got, base, over in zip(inside, GREY, red, strict=True):
            assert abs(got - round(over * 90 / 255 + base * (1 - 90 / 255))) <= 1
        assert rgb.getpixel((2, 2)) == GREY  # outside: the image as it is

        plain = Image.open(io.BytesIO(http.get(f"/images/{second.id}.png").content))
        assert set(plain.convert("RGB").tobytes()) == set(GREY)  # no objects: nothing drawn

        thumb = Image.open(io.BytesIO(http.get(f"/images/{first.id}.png?width=20").content))
        assert thumb.size == (20, 15)  # scaled down, the aspect kept
        assert f"src='/apps/{tid}/images/{first.id}.png?width=160'" in page.text

        # a dataset's pages: a page of images, the next one linked
        dataset_page = http.get(f"/datasets/{ds.id}")
        assert dataset_page.status_code == 200
        assert f"href='/apps/{tid}/images/{second.id}.png'" in dataset_page.text
        assert "more images" not in dataset_page.text  # 2 images: one page
        assert http.get(f"/datasets/{other_ds.id}").status_code == 404

        assert http.get(f"/images/{foreign.id}.png").status_code == 404
        assert http.get("/images/987654.png").status_code == 404
        assert http.get("/nothing").status_code == 404

    assert api.app.get_status(tid) == S.STARTED
    assert api.app.stop(tid) == S.TERMINATING
    assert api.task.wait(tid) == S.STOPPED
    task = api.task.get_info_by_id(tid)
    # exit code 0 and its own last line: it left on SIGTERM, it was not killed after the grace
    assert task["status"] == "stopped" and task["exit_code"] == 0
    logs = [line.text for line in api.task.follow_logs(tid)]
    assert logs[-1] == "stopped: the viewer was asked to stop"
    assert not any(alive(p) for p in pids)
    assert processes_of(tid, world.server.url) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}health", timeout=5)

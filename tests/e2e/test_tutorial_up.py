"""The seed's tutorial and ``appyard demo``, for real: against ``appyard up``, its demo
project and the bundled Pascal VOC export app (and ``demo`` also with nothing up)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values
from PIL import Image

import appyard as ay
from tests.support import Up, free_port, processes_mentioning
from tests.voc_reader import VocFolder, check_against_project

REPO = Path(__file__).resolve().parents[2]
#: the tutorial's changes to the app's defaults
THICKNESS, COEF = 2, 0.7
#: variables of the test runner's shell that must not reach the programs under test
_CLIENT_VARS = ("SERVER_ADDRESS", "API_TOKEN", "TEAM_ID", "WORKSPACE_ID", "AGENT_ID", "PROJECT_ID")

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="process checks read /proc"
)


@dataclass
class Running:
    up: Up
    home: Path  # HOME of the programs: ~/appyard.env is the file `up` wrote
    values: dict[str, str | None]
    api: ay.Api

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _CLIENT_VARS}
        env.pop("APPYARD_ENV_FILE", None)
        return {**env, "HOME": str(self.home), "COLUMNS": "200", **extra}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("user-home")
    up = Up(home / ".appyard", home / "appyard.env", free_port(), HOME=str(home))
    try:
        values = dotenv_values(home / "appyard.env")
        api = ay.Api(values["SERVER_ADDRESS"], values["API_TOKEN"])
        yield Running(up, home, values, api)
        api.close()
    finally:
        assert up.interrupt() == 0, up.output
    assert processes_mentioning(str(home)) == [], up.output


def _tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:  # a plain tar
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def _export_plan(
    api: ay.Api, project_id: int
) -> tuple[list[str], set[str], list[Any], dict[str, Any]]:
    """From the project itself: the exported names (dataset prefix), the train set (pre-assigned
    by dataset name or tag, the rest in order with the first int(n * coef) to train), the
    rectangles (name, object) to measure contours on, and each name's annotation."""
    names: list[str] = []
    annotations: dict[str, Any] = {}
    train: set[str] = set()
    rest: list[str] = []
    rectangles: list[Any] = []
    for dataset in api.dataset.get_list(project_id):
        images = sorted(api.image.get_list(dataset.id), key=lambda i: i.id)
        anns = api.annotation.download_jsons([i.id for i in images])
        for image, ann in zip(images, anns, strict=True):
            name = f"{dataset.name}_{Path(image.name).stem}"
            names.append(name)
            annotations[name] = ann
            fixed = dataset.name if dataset.name in ("train", "val") else None
            fixed = fixed or next((t for t in ("train", "val") if t in ann["tags"]), None)
            if fixed == "train":
                train.add(name)
            elif fixed is None:
                rest.append(name)
            rectangles += [
                (name, o) for o in ann["objects"] if o["geometry"]["type"] == "rectangle"
            ]
    train.update(rest[: int(len(rest) * COEF)])
    return names, train, rectangles, annotations


def _check_archive(api: ay.Api, project_id: int, archive: Path) -> None:
    names, train, rectangles, annotations = _export_plan(api, project_id)
    classes = [c["name"] for c in api.project.get_meta(project_id)["classes"]]
    splits = ("train", "val", "trainval")
    expected = {"colors.txt", "labelmap.txt"}
    for folder, ext in (
        ("JPEGImages", "jpg"),
        ("Annotations", "xml"),
        ("SegmentationClass", "png"),
        ("SegmentationObject", "png"),
    ):
        expected |= {f"{folder}/{n}.{ext}" for n in names}
    expected |= {f"ImageSets/{task}/{s}.txt" for task in ("Main", "Segmentation") for s in splits}
    expected |= {f"ImageSets/Main/{c}_{s}.txt" for c in classes for s in splits}
    # the reference's layout: one top folder, the VOC folders in its VOCdevkit/VOC/; every
    # name has its dataset prefix
    project = api.project.get_info_by_id(project_id)
    voc = f"{project_id}_{project.name}_pascal_voc/VOCdevkit/VOC/"
    files = _tar_members(archive.read_bytes())
    members = {name.removeprefix(voc): data for name, data in files.items() if name.startswith(voc)}
    assert set(members) == expected
    assert len(files) == len(expected)  # and no file elsewhere

    def listed(split: str) -> list[str]:
        return members[f"ImageSets/Segmentation/{split}.txt"].decode().split()

    assert set(listed("train")) == train
    assert set(listed("val")) == set(names) - train
    assert sorted(listed("trainval")) == sorted(names)

    for name in names:
        with Image.open(io.BytesIO(members[f"JPEGImages/{name}.jpg"])) as jpg:
            size = jpg.size
        for folder in ("SegmentationClass", "SegmentationObject"):
            with Image.open(io.BytesIO(members[f"{folder}/{name}.png"])) as mask:
                assert (mask.mode, mask.size) == ("P", size), (folder, name)

    # the contour across a rectangle's top edge is 2t+1 pixels of 255 (the boundary label)
    assert rectangles, "the demo project has rectangles"
    for name, obj in rectangles:
        g = obj["geometry"]
        with Image.open(io.BytesIO(members[f"SegmentationClass/{name}.png"])) as mask:
            x = (g["left"] + g["right"]) // 2
            column = [mask.getpixel((x, y)) for y in range(mask.height)]
        top = g["top"]
        run = [y for y in range(top - 3 * THICKNESS, top + 3 * THICKNESS + 1) if column[y] == 255]
        assert run == list(range(top - THICKNESS, top + THICKNESS + 1)), (name, run)

    # and as a VOC reader reads it: detection and segmentation, object by object
    top_folder, read = VocFolder.from_archive(archive, archive.parent / f"{archive.stem}-unpacked")
    assert f"{top_folder}/VOCdevkit/VOC/" == voc
    check_against_project(read, annotations, classes, contour=True)


def test_the_tutorial_exports_the_demo_project(running: Running) -> None:
    out = subprocess.run(
        [sys.executable, "examples/start_stop_app.py"],
        cwd=REPO,
        env=running.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Start app:  Export to Pascal VOC"
    project_id = int(running.values["PROJECT_ID"] or 0)
    assert f'    "projectId": {project_id}' in lines
    assert "Task status:  finished" in lines
    task_id = int(re.search(r"App is started, task_id =  (\d+)", out.stdout).group(1))  # type: ignore[union-attr]
    assert any(line.startswith(f"SessionInfo(task_id={task_id},") for line in lines[-3:])

    task = running.api.task.get(task_id)
    assert task.status is ay.Status.FINISHED
    assert task.params["state"]["trainSplitCoef"] == COEF
    assert task.params["state"]["pascalContourThickness"] == THICKNESS
    images = running.api.project.get_info_by_id(project_id).images_count
    assert task.progress is not None and task.progress.current == task.progress.total == images
    archive = task.outputs["archive"]
    assert archive["type"] == "team_file"
    project = running.api.project.get_info_by_id(project_id)
    assert archive["path"] == (
        f"/tmp/export-to-pascal-voc/export/{task_id}/{project_id}_{project.name}_pascal_voc.tar"
    )
    local = running.home / "export.tar"
    running.api.file.download(int(running.values["TEAM_ID"] or 0), archive["path"], local)
    _check_archive(running.api, project_id, local)


def test_demo_uses_the_appyard_that_is_up(running: Running, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "appyard.cli", "demo", "--save-to", str(tmp_path / "out")],
        env=running.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Using the appyard at {running.values['SERVER_ADDRESS']}" in out.stdout
    (tar,) = (tmp_path / "out").glob("*_pascal_voc.tar")
    project_id = int(running.values["PROJECT_ID"] or 0)
    n = running.api.project.get_info_by_id(project_id).images_count
    lists = 6 + 3 * len(running.api.project.get_meta(project_id)["classes"])
    downloaded = (
        f"Downloaded to {tar} (VOCdevkit/VOC: Annotations/ {n}, ImageSets/ {lists}, "
        f"JPEGImages/ {n}, SegmentationClass/ {n}, SegmentationObject/ {n}, colors.txt 1, "
        "labelmap.txt 1)"
    )
    assert downloaded in " ".join(out.stdout.split()), out.stdout  # as wrapped to the terminal
    _check_archive(running.api, project_id, tar)
    assert "Finished sessions of appyard/export-to-pascal-voc" in out.stdout


def test_demo_runs_its_own_appyard_when_none_is_up(tmp_path: Path) -> None:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _CLIENT_VARS}
    env.pop("APPYARD_ENV_FILE", None)
    env.update(HOME=str(home), TMPDIR=str(tmp), COLUMNS="200")
    out = subprocess.run(
        [sys.executable, "-m", "appyard.cli", "demo", "--save-to", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No appyard is up" in out.stdout
    assert "Task " in out.stdout and "finished" in out.stdout
    (tar,) = (tmp_path / "out").glob("*_pascal_voc.tar")
    members = _tar_members(tar.read_bytes())
    voc = f"{tar.name.removesuffix('.tar')}/VOCdevkit/VOC/"
    assert f"{voc}labelmap.txt" in members
    assert any(n.startswith(f"{voc}ImageSets/Main/") for n in members)
    assert any(n.startswith(f"{voc}JPEGImages/") for n in members)
    # nothing is left: no process, no temporary appyard, no env file written for it
    assert processes_mentioning(str(tmp)) == []
    assert list(tmp.iterdir()) == []
    assert not (home / "appyard.env").exists()

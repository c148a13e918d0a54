"""The bundled data apps on a real agent: ``create-demo-project`` draws what it annotates, and
``import-images`` brings a team-files folder in as a project, exactly, or fails naming the file
and leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import appyard as ay
from appyard.errors import TaskFinishedWithError
from appyard.schemas.annotation import ProjectMeta, encode_bitmap
from appyard.sdk.geometry import bounding_box, object_mask
from tests.e2e.conftest import Env
from tests.support import wait_for
from tests.voc_reader import VocFolder, check_against_project

S = ay.Status
ECOSYSTEM = Path(__file__).resolve().parents[2] / "src" / "appyard" / "ecosystem"
RUN_TIMEOUT_S = 180.0
BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


def run_app(env: Env, app: str, **state: Any) -> int:
    module_id = env.world.admin.publish(ECOSYSTEM / app)["module_id"]
    session = env.api.app.start(
        agent_id=env.agent_id,
        module_id=module_id,
        workspace_id=env.world.workspace_id,
        params=state,
        task_name=app,
    )
    return session.task_id


def finish(env: Env, task_id: int) -> int:
    """Wait for the task to finish; its ``project_id`` output."""
    assert env.api.task.wait(task_id, S.FINISHED, 1, RUN_TIMEOUT_S) == S.FINISHED
    project_id = env.api.task.get(task_id).outputs["project_id"]
    assert isinstance(project_id, int)
    return project_id


def fail(env: Env, task_id: int) -> list[str]:
    """Wait for the task to end in error; its log lines."""
    with pytest.raises(TaskFinishedWithError):
        env.api.task.wait(task_id, S.FINISHED, 1, RUN_TIMEOUT_S)
    assert env.api.task.get_status(task_id) == S.ERROR
    return [line.text for line in env.api.task.logs(task_id)]


def rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def project_contents(api: ay.Api, project_id: int) -> dict[str, dict[str, tuple[str, Any]]]:
    """dataset name -> image name -> (sha256 of the file, annotation JSON)."""
    out: dict[str, dict[str, tuple[str, Any]]] = {}
    for ds in api.dataset.get_list(project_id):
        images = api.image.get_list(ds.id)
        anns = api.annotation.download_jsons([i.id for i in images])
        out[ds.name] = {i.name: (i.sha256, a) for i, a in zip(images, anns, strict=True)}
    return out


# -- create-demo-project ------------------------------------------------------------------------


def test_demo_project_is_annotated_exactly(env: Env) -> None:
    api = env.api
    task_id = run_app(env, "create-demo-project", projectName="Shapes", imagesPerDataset=3, seed=11)
    project_id = finish(env, task_id)
    task = api.task.get(task_id)
    assert task.progress is not None
    assert (task.progress.current, task.progress.total) == (9, 9)

    project = api.project.get_info_by_id(project_id)
    assert (project.name, project.workspace_id) == ("Shapes", env.world.workspace_id)
    assert (project.datasets_count, project.images_count) == (3, 9)
    meta = ProjectMeta.model_validate(api.project.get_meta(project_id))
    shapes = {c.name: c.shape for c in meta.classes}
    assert shapes == {
        "box": "rectangle",
        "triangle": "polygon",
        "ring": "polygon",
        "blob": "bitmap",
    }
    assert {"train", "val"} <= meta.tag_names()
    colors = {c.name: rgb(c.color or "") for c in meta.classes}

    datasets = api.dataset.get_list(project_id)
    assert [d.name for d in datasets] == ["city", "forest", "val"]
    seen_classes: set[str] = set()
    objects = 0
    for ds in datasets:
        images = api.image.get_list(ds.id)
        assert len(images) == 3
        anns = api.annotation.download_jsons([i.id for i in images])
        tags = [a["tags"] for a in anns]
        assert tags == ([[], [], []] if ds.name == "val" else [["train"], ["val"], []])
        for info, ann in zip(images, anns, strict=True):
            assert info.mime == "image/png"
            img = Image.open(io.BytesIO(api.image.download_bytes(info.id))).convert("RGB")
            assert ann["size"] == {"width": img.width, "height": img.height}
            assert ann["objects"], f"{ds.name}/{info.name} has no objects"
            pixels = img.tobytes()
            for obj in ann["objects"]:
                mask = object_mask(obj, img.width, img.height)
                inside = [k for k, v in enumerate(mask.tobytes()) if v]
                assert inside, f"{ds.name}/{info.name}: an empty {obj['class']}"
                want = bytes(colors[obj["class"]])
                wrong = [k for k in inside if pixels[3 * k : 3 * k + 3] != want]
                assert not wrong, f"{ds.name}/{info.name}: {len(wrong)} pixels of a {obj['class']}"
                left, top, right, bottom = bounding_box(obj)
                assert mask.getbbox() == (left, top, right + 1, bottom + 1)
                seen_classes.add(obj["class"])
                objects += 1
            assert info.objects_count == len(ann["objects"])
    assert seen_classes == set(shapes)
    logs = [line.text for line in api.task.logs(task_id)]
    assert logs[-1] == (
        f"done: project 'Shapes' (id {project_id}), 3 datasets, 9 images, {objects} objects"
    )

    # the same seed makes the same project, under a free name
    again = finish(
        env, run_app(env, "create-demo-project", projectName="Shapes", imagesPerDataset=3, seed=11)
    )
    assert api.project.get_info_by_id(again).name == "Shapes 1"
    assert project_contents(api, again) == project_contents(api, project_id)


def test_a_stopped_demo_leaves_no_project(env: Env) -> None:
    api = env.api
    task_id = run_app(env, "create-demo-project", imagesPerDataset=400, seed=1)

    def uploading() -> bool:
        progress = api.task.get(task_id).progress
        return progress is not None and progress.current >= 1

    wait_for(uploading, 60, "the demo to upload its first image")
    assert api.project.get_list(env.world.workspace_id) != []
    api.app.stop(task_id)
    assert api.task.wait(task_id, None, 1, RUN_TIMEOUT_S) == S.STOPPED
    logs = [line.text for line in api.task.logs(task_id)]
    assert any("removing the unfinished project" in line for line in logs), logs
    assert api.project.get_list(env.world.workspace_id) == []


# -- import-images ------------------------------------------------------------------------------


def save_png(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="PNG")


def annotation(width: int, height: int, n: int) -> dict[str, Any]:
    """A full annotation (every key present, as the server gives it back) of three objects."""
    mask = bytes((x + y + n) % 3 != 0 for y in range(4) for x in range(5))
    return {
        "size": {"width": width, "height": height},
        "tags": ["train"] if n % 2 else ["val"],
        "objects": [
            {
                "class": "car",
                "tags": ["occluded"] if n % 3 == 0 else [],
                "geometry": {"type": "rectangle", "left": n, "top": 1, "right": n + 5, "bottom": 9},
            },
            {
                "class": "road",
                "tags": [],
                "geometry": {
                    "type": "polygon",
                    "exterior": [
                        [0.0, 10.0],
                        [width - 1.0, 10.0],
                        [width - 1.0, height - 1.0],
                        [0.5, height - 1.0],
                    ],
                    "interiors": [[[2.0, 12.0], [6.0, 12.0], [4.0, 14.5]]],
                },
            },
            {
                "class": "blob",
                "tags": [],
                "geometry": {
                    "type": "bitmap",
                    "origin": [width - 6, 2],
                    "data": encode_bitmap(5, 4, mask),
                },
            },
        ],
    }


def make_folder(root: Path, layout: dict[str, tuple[int, int] | None]) -> dict[str, Any]:
    """Images (``rel path -> size``; ``None`` sizes a JPEG without annotation) with annotations
    next to them; returns ``rel path -> (sha256, annotation)``."""
    out: dict[str, Any] = {}
    for n, (rel, size) in enumerate(layout.items()):
        path = root / rel
        if size is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (24, 18), (n, 50, 60)).save(path, format="JPEG")
            with Image.open(path) as img:
                ann: dict[str, Any] = {
                    "size": {"width": img.width, "height": img.height},
                    "tags": [],
                    "objects": [],
                }
        else:
            save_png(path, size, (n * 20 % 256, 90, 120))
            ann = annotation(*size, n)
            Path(f"{path}.json").write_text(json.dumps(ann))
        out[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), ann)
    return out


def test_import_round_trip(env: Env, tmp_path: Path) -> None:
    api, team_id = env.api, env.world.team_id
    local = tmp_path / "shapes"
    expected = make_folder(
        local,
        {
            "a.png": (40, 30),
            "b.png": (32, 24),
            "city/001.png": (50, 40),
            "city/002.png": (48, 30),
            "city/003.jpg": None,
            "forest/day/x.png": (36, 36),
            "forest/day/y.png": (40, 20),
        },
    )
    (local / "notes.txt").write_text("not an image")
    (local / "city" / "orphan.png.json").write_text("{}")  # no image: ignored
    api.file.upload_directory(team_id, local, "/imports/shapes")

    task_id = run_app(
        env, "import-images", folder="/imports/shapes/", projectName="", datasetName=""
    )
    project_id = finish(env, task_id)
    project = api.project.get_info_by_id(project_id)
    assert (project.name, project.images_count) == ("shapes", 7)
    task = api.task.get(task_id)
    assert task.progress is not None and (task.progress.current, task.progress.total) == (7, 7)

    # the meta inferred from the annotations: classes in order of first use, with their shapes
    meta = ProjectMeta.model_validate(api.project.get_meta(project_id))
    assert [(c.name, c.shape) for c in meta.classes] == [
        ("car", "rectangle"),
        ("road", "polygon"),
        ("blob", "bitmap"),
    ]
    assert meta.tag_names() == {"train", "val", "occluded"}

    got = project_contents(api, project_id)
    where = {"shapes": "", "city": "city/", "forest__day": "forest/day/"}
    assert set(got) == set(where)
    flat = {where[ds] + name: value for ds, images in got.items() for name, value in images.items()}
    assert flat == expected  # every file byte for byte, every annotation exactly

    # and out again: the Pascal VOC export of the imported project has the same objects
    export = run_app(
        env,
        "export-to-pascal-voc",
        projectId=project_id,
        pascalContourThickness=0,
        trainSplitCoef=0.5,
        addPrefixToImages=True,
    )
    assert env.api.task.wait(export, S.FINISHED, 1, RUN_TIMEOUT_S) == S.FINISHED
    remote = api.task.get(export).outputs["archive"]["path"]
    archive = tmp_path / Path(remote).name  # its name is its top folder's, with ".tar"
    api.file.download(team_id, remote, archive)
    classes = [c.name for c in meta.classes]
    exported = {
        f"{ds}_{Path(name).stem}": ann
        for ds, images in got.items()
        for name, (_, ann) in images.items()
    }
    _check_export_round_trip(archive, exported, classes)

    # meta.json gives the meta (an unused class and its colours included); datasetName the root's
    meta_json = {
        "classes": [
            {"name": "car", "shape": "rectangle", "color": "#112233"},
            {"name": "road", "shape": "polygon", "color": "#445566"},
            {"name": "blob", "shape": "bitmap", "color": "#778899"},
            {"name": "unused", "shape": "polygon", "color": "#AABBCC"},
        ],
        "tags": [{"name": "val"}, {"name": "train"}, {"name": "occluded"}, {"name": "spare"}],
    }
    second = tmp_path / "second"
    expected2 = make_folder(second, {"p.png": (40, 30), "sub/q.png": (30, 30)})
    (second / "meta.json").write_text(json.dumps(meta_json))
    api.file.upload_directory(team_id, second, "/imports/second")
    project2 = finish(
        env,
        run_app(
            env, "import-images", folder="/imports/second", projectName="Shapes", datasetName="root"
        ),
    )
    assert api.project.get_info_by_id(project2).name == "Shapes"
    assert ProjectMeta.model_validate(api.project.get_meta(project2)) == ProjectMeta.model_validate(
        meta_json
    )
    got2 = project_contents(api, project2)
    assert got2 == {"root": {"p.png": expected2["p.png"]}, "sub": {"q.png": expected2["sub/q.png"]}}


def _check_export_round_trip(
    archive: Path, annotations: dict[str, dict[str, Any]], classes: list[str]
) -> None:
    """Each exported image's XML boxes are its objects' boxes (1-based), and with no contour
    its masks are its objects drawn in order (class index, instance index) pixel for pixel;
    and a VOC reader reads the same objects (its boxes, lists and masks by colour)."""
    voc = f"{archive.name.removesuffix('.tar')}/VOCdevkit/VOC/"  # the VOC folders' place
    with tarfile.open(archive) as tar:
        members = {
            m.name.removeprefix(voc): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile() and m.name.startswith(voc)
        }
    for name, ann in annotations.items():
        width, height = ann["size"]["width"], ann["size"]["height"]
        xml = ET.fromstring(members[f"Annotations/{name}.xml"])
        boxes = [
            (o.findtext("name"), *(int(o.findtext(f"bndbox/{k}") or 0) for k in BOX_KEYS))
            for o in xml.iter("object")
        ]
        assert boxes == [(o["class"], *(v + 1 for v in bounding_box(o))) for o in ann["objects"]], (
            name
        )
        want_class = Image.new("L", (width, height), 0)
        want_object = Image.new("L", (width, height), 0)
        for n, obj in enumerate(ann["objects"], start=1):
            inside = object_mask(obj, width, height)
            want_class.paste(classes.index(obj["class"]) + 1, (0, 0), inside)
            want_object.paste(n, (0, 0), inside)
        for folder, want in (
            ("SegmentationClass", want_class),
            ("SegmentationObject", want_object),
        ):
            with Image.open(io.BytesIO(members[f"{folder}/{name}.png"])) as got:
                assert got.mode == "P", (folder, name)
                assert got.tobytes() == want.tobytes(), (folder, name)
    _, read = VocFolder.from_archive(archive, archive.parent / "unpacked")
    check_against_project(read, annotations, classes, contour=False)


def test_import_of_a_bad_annotation_fails_naming_the_file(env: Env, tmp_path: Path) -> None:
    api, team_id = env.api, env.world.team_id

    # a point outside the image: found before anything is made
    local = tmp_path / "bad"
    make_folder(local, {"a.png": (40, 30), "b.png": (40, 30)})
    ann = json.loads((local / "b.png.json").read_text())
    ann["objects"][1]["geometry"]["exterior"][2] = [40.0, 29.0]
    (local / "b.png.json").write_text(json.dumps(ann))
    api.file.upload_directory(team_id, local, "/bad")
    logs = fail(env, run_app(env, "import-images", folder="/bad"))
    assert any(
        "/bad/b.png.json: objects[1].geometry.exterior[2]: the point (40, 29) is outside" in line
        for line in logs
    ), logs
    assert api.project.get_list(env.world.workspace_id) == []

    # not JSON, and JSON that is no annotation
    api.file.upload(team_id, _text(tmp_path / "c.json", "{oops"), "/bad/a.png.json")
    logs = fail(env, run_app(env, "import-images", folder="/bad"))
    assert any("/bad/a.png.json: is not valid JSON (line 1, column 2" in line for line in logs), (
        logs
    )
    api.file.upload(
        team_id, _text(tmp_path / "d.json", '{"size": {"width": 40}}'), "/bad/a.png.json"
    )
    logs = fail(env, run_app(env, "import-images", folder="/bad"))
    assert any("/bad/a.png.json: size.height: Field required" in line for line in logs), logs
    assert api.project.get_list(env.world.workspace_id) == []

    # a size that is not the image's: found while importing (the first dataset is in by then),
    # and the partly made project is removed
    late = tmp_path / "late"
    make_folder(late, {"a/1.png": (40, 30), "a/2.png": (40, 30), "b/3.png": (40, 30)})
    save_png(late / "b" / "3.png", (41, 30), (1, 2, 3))
    api.file.upload_directory(team_id, late, "/late")
    logs = fail(env, run_app(env, "import-images", folder="/late", projectName="Late"))
    assert any(
        "/late/b/3.png.json: size: says 40x30 but the image /late/b/3.png is 41x30" in line
        for line in logs
    ), logs
    assert any("removing the unfinished project" in line for line in logs), logs
    assert any("dataset 'a'" in line for line in logs), logs  # it had got that far
    assert api.project.get_list(env.world.workspace_id) == []


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path

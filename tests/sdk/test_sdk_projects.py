"""``api.project``/``dataset``/``image``/``annotation`` against a real server, and the geometry
helpers (``appyard.sdk.geometry``) pixel by pixel."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import appyard as ay
from appyard.errors import (
    BadRequestError,
    ConflictError,
    InvalidArgumentsError,
    NotFoundError,
)
from appyard.schemas.annotation import ProjectMeta, encode_bitmap
from appyard.schemas.projects import ANNOTATION_BATCH, ProjectInfo
from appyard.sdk import Api
from appyard.sdk.geometry import bounding_box, object_mask
from tests.support import ServerProc

_counter = itertools.count(1)

META: dict[str, Any] = {
    "classes": [
        {"name": "box", "shape": "rectangle", "color": "#E53935"},
        {"name": "road", "shape": "polygon"},
        {"name": "blob", "shape": "bitmap"},
    ],
    "tags": [{"name": "train"}, {"name": "val"}, {"name": "occluded"}],
}


@dataclass
class Space:
    api: Api
    team_id: int
    workspace_id: int

    def project(self, name: str = "p") -> ProjectInfo:
        project = self.api.project.create(self.workspace_id, name)
        self.api.project.update_meta(project.id, META)
        return project


@pytest.fixture
def space(server: ServerProc) -> Iterator[Space]:
    api = Api(server.url, server.admin_token)
    team = api.team.create(f"data-team-{next(_counter)}")
    ws = api.workspace.create(team.id, "ws")
    yield Space(api, team.id, ws.id)
    api.close()


def png(width: int, height: int, color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def full_annotation(width: int = 64, height: int = 48) -> dict[str, Any]:
    mask = bytes([0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 0])  # 4x3
    return {
        "size": {"width": width, "height": height},
        "tags": ["train"],
        "objects": [
            {
                "class": "box",
                "tags": [],
                "geometry": {"type": "rectangle", "left": 1, "top": 2, "right": 10, "bottom": 8},
            },
            {
                "class": "road",
                "tags": ["occluded"],
                "geometry": {
                    "type": "polygon",
                    "exterior": [[0.0, 30.0], [63.0, 30.0], [63.0, 47.0], [0.0, 47.0]],
                    "interiors": [[[10.0, 35.0], [20.0, 35.0], [15.0, 40.5]]],
                },
            },
            {
                "class": "blob",
                "tags": [],
                "geometry": {
                    "type": "bitmap",
                    "origin": [40, 5],
                    "data": encode_bitmap(4, 3, mask),
                },
            },
        ],
    }


# -- projects and datasets ----------------------------------------------------------------------


def test_projects_and_datasets_round_trip(space: Space) -> None:
    api = space.api
    project = api.project.create(space.workspace_id, "Shapes", description="d")
    assert isinstance(project, ProjectInfo)
    assert (project.name, project.description, project.type) == ("Shapes", "d", "images")
    assert (project.team_id, project.workspace_id) == (space.team_id, space.workspace_id)
    assert api.project.get_info_by_id(project.id) == project
    assert api.project.get_info_by_name(space.workspace_id, "Shapes") == project
    assert api.project.get_info_by_name(space.workspace_id, "nope") is None

    with pytest.raises(ConflictError):
        api.project.create(space.workspace_id, "Shapes")
    renamed = api.project.create(space.workspace_id, "Shapes", change_name_if_conflict=True)
    assert renamed.name == "Shapes 1"
    assert [p.id for p in api.project.get_list(space.workspace_id)] == [project.id, renamed.id]

    assert api.project.get_meta(project.id) == {"classes": [], "tags": []}
    stored = api.project.update_meta(project.id, ProjectMeta.model_validate(META))
    assert isinstance(stored, dict)
    assert [c["name"] for c in stored["classes"]] == ["box", "road", "blob"]
    assert stored["classes"][0]["color"] == "#E53935"
    assert all(c["color"] for c in stored["classes"])  # the palette filled the rest in
    assert api.project.get_meta(project.id) == stored
    assert api.project.update_meta(project.id, stored) == stored  # a dict works as well

    train = api.dataset.create(project.id, "train", description="t")
    assert (train.name, train.project_id, train.images_count) == ("train", project.id, 0)
    with pytest.raises(ConflictError):
        api.dataset.create(project.id, "train")
    again = api.dataset.create(project.id, "train", change_name_if_conflict=True)
    assert again.name == "train 1"
    assert api.dataset.get_info_by_id(train.id) == train
    assert [d.name for d in api.dataset.get_list(project.id)] == ["train", "train 1"]
    assert api.project.get_info_by_id(project.id).datasets_count == 2

    api.project.remove(renamed.id)
    with pytest.raises(NotFoundError):
        api.project.get_info_by_id(renamed.id)
    assert [p.id for p in api.project.get_list(space.workspace_id)] == [project.id]


def test_a_name_lookup_misses_only_on_the_name(server: ServerProc, space: Space) -> None:
    """None is for "no project of that name"; a workspace that is not there, or not yours, is
    an error (the server's 404 names ``workspace_id`` then, and ``name`` for a miss)."""
    api = space.api
    project = space.project("here")
    assert api.project.get_info_by_name(space.workspace_id, "here") == api.project.get_info_by_id(
        project.id
    )
    assert api.project.get_info_by_name(space.workspace_id, "elsewhere") is None
    with pytest.raises(NotFoundError) as unknown:
        api.project.get_info_by_name(10**9, "here")
    assert unknown.value.field == "workspace_id"

    login = f"outsider-{next(_counter)}"
    outsider = api.user.create(login)
    token = api.user.create_token(login, user_id=outsider.id).token
    with Api(server.url, token) as theirs:
        with pytest.raises(NotFoundError) as forbidden:
            theirs.project.get_info_by_name(space.workspace_id, "here")
        assert forbidden.value.field == "workspace_id"
        with pytest.raises(NotFoundError):
            theirs.project.get_info_by_name(space.workspace_id, "elsewhere")


def test_errors_are_typed(space: Space, tmp_path: Path) -> None:
    api = space.api
    project = space.project()
    ds = api.dataset.create(project.id, "ds")
    with pytest.raises(NotFoundError):
        api.project.get_info_by_id(10**9)
    with pytest.raises(NotFoundError):
        api.dataset.get_info_by_id(10**9)
    with pytest.raises(NotFoundError):
        api.image.get_list(10**9)
    with pytest.raises(NotFoundError):
        api.annotation.download_json(10**9)
    with pytest.raises(BadRequestError) as bad_name:
        api.project.create(space.workspace_id, "a/b")
    assert bad_name.value.field is not None and "name" in bad_name.value.field
    with pytest.raises(BadRequestError) as bad_meta:
        api.project.update_meta(project.id, {"classes": [{"name": "x", "shape": "circle"}]})
    assert bad_meta.value.status_code == 422

    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    with pytest.raises(BadRequestError) as bad_file:
        api.image.upload_path(ds.id, "notes.png", not_image)
    assert bad_file.value.field == "file"
    assert api.image.get_list(ds.id) == []

    # a used class cannot leave the meta
    image = api.image.upload_bytes(ds.id, "a.png", png(64, 48))
    api.annotation.upload_json(image.id, full_annotation())
    meta = api.project.get_meta(project.id)
    with pytest.raises(ConflictError) as used:
        api.project.update_meta(project.id, {**meta, "classes": meta["classes"][1:]})
    assert "box" in str(used.value)

    with pytest.raises(InvalidArgumentsError):
        api.image.upload_paths(ds.id, ["a.png", "b.png"], [not_image])
    with pytest.raises(InvalidArgumentsError):
        api.annotation.upload_jsons([image.id], [])


# -- images -------------------------------------------------------------------------------------


def test_images_upload_and_download(space: Space, tmp_path: Path) -> None:
    api = space.api
    project = space.project()
    ds = api.dataset.create(project.id, "ds")
    data = png(64, 48, (200, 100, 50))
    src = tmp_path / "a.png"
    src.write_bytes(data)

    a = api.image.upload_path(ds.id, "a.png", src)
    assert (a.name, a.dataset_id, a.project_id, a.team_id) == (
        "a.png",
        ds.id,
        project.id,
        space.team_id,
    )
    assert (a.width, a.height, a.size, a.mime) == (64, 48, len(data), "image/png")
    assert a.sha256 == hashlib.sha256(data).hexdigest()
    assert (a.tags, a.objects_count) == ([], 0)

    jpeg = io.BytesIO()
    Image.new("RGB", (30, 20), (1, 2, 3)).save(jpeg, format="JPEG")
    b = api.image.upload_bytes(ds.id, "b.jpg", jpeg.getvalue())
    assert (b.width, b.height, b.mime) == (30, 20, "image/jpeg")
    with pytest.raises(ConflictError):
        api.image.upload_bytes(ds.id, "b.jpg", jpeg.getvalue())

    done: list[int] = []
    paths = []
    for i in range(3):
        path = tmp_path / f"c{i}.png"
        path.write_bytes(png(8 + i, 8, (i, i, i)))
        paths.append(path)
    many = api.image.upload_paths(ds.id, [p.name for p in paths], paths, progress_cb=done.append)
    assert [(m.name, m.width) for m in many] == [("c0.png", 8), ("c1.png", 9), ("c2.png", 10)]
    assert done == [1, 1, 1]

    assert api.image.get_info_by_id(a.id) == a
    assert [i.id for i in api.image.get_list(ds.id)] == [a.id, b.id, *(m.id for m in many)]
    assert api.image.download_bytes(a.id) == data
    out = tmp_path / "down" / "deeper" / "a.png"
    api.image.download_path(a.id, out)
    assert out.read_bytes() == data
    assert [p.name for p in out.parent.iterdir()] == ["a.png"]  # no temp file left
    # an ordinary new file: 0666 less the umask (as api.file.download makes them)
    for umask, mode in ((0o022, 0o644), (0o002, 0o664)):
        old = os.umask(umask)
        try:
            api.image.download_path(a.id, out)
        finally:
            os.umask(old)
        assert out.read_bytes() == data
        assert oct(out.stat().st_mode & 0o777) == oct(mode)
    with pytest.raises(NotFoundError):
        api.image.download_path(10**9, tmp_path / "down" / "deeper" / "missing.png")
    assert [p.name for p in out.parent.iterdir()] == ["a.png"]
    assert api.image.download_bytes(b.id) == jpeg.getvalue()
    # a fresh image has an empty annotation of its real size
    assert api.annotation.download_json(b.id) == {
        "size": {"width": 30, "height": 20},
        "tags": [],
        "objects": [],
    }
    assert api.dataset.get_info_by_id(ds.id).images_count == 5


# -- annotations --------------------------------------------------------------------------------


def test_annotation_round_trip_and_atomic_batches(space: Space) -> None:
    api = space.api
    project = space.project()
    ds = api.dataset.create(project.id, "ds")
    ids = [api.image.upload_bytes(ds.id, f"{i}.png", png(64, 48, (i, 0, 0))).id for i in range(4)]

    ann = full_annotation()
    assert api.annotation.upload_json(ids[0], ann) is None
    assert api.annotation.download_json(ids[0]) == ann
    info = api.image.get_info_by_id(ids[0])
    assert (info.tags, info.objects_count) == (["train"], 3)
    # the typed model is accepted too
    api.annotation.upload_json(ids[1], ay.Annotation.model_validate(ann))
    assert api.annotation.download_json(ids[1]) == ann

    # one bad item: a 422 naming it, and nothing of the batch written
    bad = full_annotation()
    bad["objects"][1]["geometry"]["exterior"][1] = [64.0, 30.0]
    empty = {"size": {"width": 64, "height": 48}, "tags": [], "objects": []}
    with pytest.raises(BadRequestError) as problem:
        api.annotation.upload_jsons([ids[0], ids[2], ids[3]], [empty, ann, bad])
    assert problem.value.field == "items[2].annotation.objects[1].geometry.exterior[1]"
    assert api.annotation.download_jsons([ids[0], ids[2], ids[3]]) == [ann, empty, empty]

    unknown = {**empty, "tags": ["nope"]}
    with pytest.raises(BadRequestError) as tag_problem:
        api.annotation.upload_json(ids[2], unknown)
    assert tag_problem.value.field == "items[0].annotation.tags[0]"
    wrong_size = {**empty, "size": {"width": 65, "height": 48}}
    with pytest.raises(BadRequestError) as size_problem:
        api.annotation.upload_json(ids[2], wrong_size)
    assert size_problem.value.field == "items[0].annotation.size"


def test_batches_over_the_limit(space: Space) -> None:
    """More than 500 annotations go up and come back in batches, in the order asked; image
    lists follow every page."""
    api = space.api
    project = space.project()
    ds = api.dataset.create(project.id, "many")
    n = ANNOTATION_BATCH + 23

    def upload(i: int) -> int:
        return api.image.upload_bytes(ds.id, f"{i:04d}.png", png(6, 5, (i % 256, i // 256, 7))).id

    with ThreadPoolExecutor(8) as pool:  # the client's pool is shared by the threads
        ids = sorted(pool.map(upload, range(n)))
    listed = api.image.get_list(ds.id)
    assert [i.id for i in listed] == ids  # more than one page of 500

    anns = [
        {
            "size": {"width": 6, "height": 5},
            "tags": ["train"] if i % 2 else ["val"],
            "objects": [
                {
                    "class": "box",
                    "tags": [],
                    "geometry": {
                        "type": "rectangle",
                        "left": i % 6,
                        "top": i % 5,
                        "right": 5,
                        "bottom": 4,
                    },
                }
            ],
        }
        for i in range(n)
    ]
    up: list[int] = []
    api.annotation.upload_jsons(ids, anns, progress_cb=up.append)
    assert up == [ANNOTATION_BATCH, 23]

    order = list(reversed(ids))
    down: list[int] = []
    got = api.annotation.download_jsons(order, progress_cb=down.append)
    assert down == [ANNOTATION_BATCH, 23]
    assert got == list(reversed(anns))
    assert api.annotation.download_jsons([]) == []
    last = api.image.get_info_by_id(ids[-1])
    assert (last.tags, last.objects_count) == (anns[-1]["tags"], 1)


# -- geometry helpers (no server) ---------------------------------------------------------------


def rows(mask: Image.Image) -> list[str]:
    assert mask.mode == "L"
    data = mask.tobytes()
    w, h = mask.size
    assert set(data) <= {0, 255}
    return ["".join("#" if data[y * w + x] else "." for x in range(w)) for y in range(h)]


def test_rectangle_mask_and_box_are_inclusive() -> None:
    obj = {
        "class": "box",
        "geometry": {"type": "rectangle", "left": 1, "top": 1, "right": 3, "bottom": 2},
    }
    assert rows(object_mask(obj, 6, 4)) == [
        "......",
        ".###..",
        ".###..",
        "......",
    ]
    assert bounding_box(obj) == (1, 1, 3, 2)
    single = {"type": "rectangle", "left": 2, "top": 0, "right": 2, "bottom": 0}
    assert rows(object_mask(single, 4, 2)) == ["..#.", "...."]
    # clipped to the canvas
    assert rows(
        object_mask({"type": "rectangle", "left": 2, "top": 1, "right": 9, "bottom": 9}, 4, 3)
    ) == [
        "....",
        "..##",
        "..##",
    ]


def test_polygon_mask_fills_and_cuts_holes() -> None:
    ring = ay.Annotation.model_validate(
        {
            "size": {"width": 9, "height": 9},
            "objects": [
                {
                    "class": "road",
                    "geometry": {
                        "type": "polygon",
                        "exterior": [[0, 0], [7, 0], [7, 7], [0, 7]],
                        "interiors": [[[2, 2], [5, 2], [5, 5], [2, 5]]],
                    },
                }
            ],
        }
    ).objects[0]
    assert rows(object_mask(ring, 9, 9)) == [
        "########.",
        "########.",
        "##....##.",
        "##....##.",
        "##....##.",
        "##....##.",
        "########.",
        "########.",
        ".........",
    ]
    assert bounding_box(ring) == (0, 0, 7, 7)
    triangle = {"type": "polygon", "exterior": [[0, 0], [4, 0], [0, 4]], "interiors": []}
    assert rows(object_mask(triangle, 5, 5)) == [
        "#####",
        "####.",
        "###..",
        "##...",
        "#....",
    ]
    # points are rounded to the nearest pixel, halves up
    fractional = {
        "type": "polygon",
        "exterior": [[0.4, 0.3], [2.5, 0.49], [2.6, 2.5], [0.49, 2.5]],
    }
    assert bounding_box(fractional) == (0, 0, 3, 3)
    assert rows(object_mask(fractional, 5, 4)) == [
        "####.",
        "####.",
        "####.",
        "####.",
    ]


def test_bitmap_mask_is_placed_at_its_origin() -> None:
    cross = bytes([0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])  # 4x4, last column/row empty
    obj = {
        "class": "blob",
        "geometry": {"type": "bitmap", "origin": [2, 1], "data": encode_bitmap(4, 4, cross)},
    }
    assert rows(object_mask(obj, 7, 6)) == [
        ".......",
        "...#...",
        "..###..",
        "...#...",
        ".......",
        ".......",
    ]
    # the box is of the set pixels, not of the PNG
    assert bounding_box(obj) == (2, 1, 4, 3)
    assert bounding_box(obj["geometry"]) == (2, 1, 4, 3)
    # clipped at the canvas edge
    assert rows(object_mask(obj, 4, 3)) == ["....", "...#", "..##"]

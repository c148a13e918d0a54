"""Images projects on a real server: projects, datasets, images, annotations (docs/data.md).

Every bad write is refused with a 4xx naming the field, and leaves the project exactly as it was.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import struct
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from PIL import Image
from sqlalchemy import create_engine

from appyard.errors import BadRequestError, NotFoundError
from appyard.schemas.annotation import encode_bitmap
from appyard.schemas.projects import AnnotationUpload
from appyard.server.db.engine import Database
from appyard.server.db.migrate import alembic_config
from appyard.server.db.models import Base
from appyard.server.security import Principal
from appyard.server.services import annotations as svc
from appyard.server.services.accounts import authenticate
from appyard.server.storage import ImageStore
from tests.support import Client, World, pg_available, pg_database

# -- helpers ------------------------------------------------------------------------------------


def _image(fmt: str, width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    img = Image.new("RGB", (width, height), color)
    for x in range(0, width, 7):  # some content, so that the files differ from plain colour
        img.putpixel((x, x % height), (x % 256, 255 - x % 256, 90))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _err(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["message"], error
    return error


def _upload(c: Client, dataset_id: int, name: str, data: bytes, **form: Any) -> Any:
    fields = {"dataset_id": str(dataset_id), "name": name}
    fields.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in form.items()})
    return c.http.post("/images", data=fields, files={"file": (name, data)})


def _ok_upload(c: Client, dataset_id: int, name: str, data: bytes, **form: Any) -> dict[str, Any]:
    r = _upload(c, dataset_id, name, data, **form)
    assert r.status_code == 201, r.text
    info: dict[str, Any] = r.json()
    return info


def _project(world: World, name: str = "shapes", **kw: Any) -> dict[str, Any]:
    body = {"workspace_id": world.workspace_id, "name": name, **kw}
    info: dict[str, Any] = world.admin.ok("POST", "/projects", json=body)
    return info


def _dataset(world: World, project_id: int, name: str = "ds", **kw: Any) -> dict[str, Any]:
    info: dict[str, Any] = world.admin.ok(
        "POST", "/datasets", json={"project_id": project_id, "name": name, **kw}
    )
    return info


def _all_images(c: Client, dataset_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"dataset_id": dataset_id, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = c.ok("GET", "/images", params=params)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def _state(c: Client, project_id: int) -> dict[str, Any]:
    """Everything the API tells of a project: info, meta, datasets, images, annotations."""
    datasets = c.ok("GET", "/datasets", params={"project_id": project_id})
    images = [im for ds in datasets for im in _all_images(c, ds["id"])]
    ids = [im["id"] for im in images]
    annotations = c.ok("POST", "/annotations/download", json={"image_ids": ids}) if ids else []
    return {
        "project": c.ok("GET", f"/projects/{project_id}"),
        "meta": c.ok("GET", f"/projects/{project_id}/meta"),
        "datasets": datasets,
        "images": images,
        "annotations": annotations,
    }


META: dict[str, Any] = {
    "classes": [
        {"name": "box", "shape": "rectangle", "color": "#e53935"},
        {"name": "road", "shape": "polygon"},
        {"name": "blob", "shape": "bitmap"},
    ],
    "tags": [{"name": "train"}, {"name": "val"}, {"name": "occluded"}],
}


def _mask_png(width: int, height: int, on: set[tuple[int, int]]) -> str:
    mask = bytes(1 if (x, y) in on else 0 for y in range(height) for x in range(width))
    return encode_bitmap(width, height, mask)


def _annotation(width: int, height: int) -> dict[str, Any]:
    """An annotation of a ``width x height`` image with one object of each shape."""
    return {
        "size": {"width": width, "height": height},
        "tags": ["train"],
        "objects": [
            {
                "class": "box",
                "tags": [],
                "geometry": {"type": "rectangle", "left": 1, "top": 2, "right": 20, "bottom": 15},
            },
            {
                "class": "road",
                "tags": ["occluded"],
                "geometry": {
                    "type": "polygon",
                    "exterior": [
                        [0, 10],
                        [width - 1, 10],
                        [width - 1, height - 1],
                        [0, height - 1],
                    ],
                    "interiors": [[[5, 20], [9, 20], [9, 24]]],
                },
            },
            {
                "class": "blob",
                "tags": [],
                "geometry": {
                    "type": "bitmap",
                    "origin": [3, 4],
                    "data": _mask_png(4, 3, {(0, 0), (1, 1), (3, 2)}),
                },
            },
        ],
    }


@pytest.fixture
def filled(world: World) -> dict[str, Any]:
    """A project with the meta above, one dataset and two images (a PNG and a JPEG)."""
    project = _project(world)
    world.admin.ok("PUT", f"/projects/{project['id']}/meta", json=META)
    ds = _dataset(world, project["id"])
    png = _ok_upload(world.admin, ds["id"], "a.png", _image("PNG", 64, 48))
    jpg = _ok_upload(world.admin, ds["id"], "b.jpg", _image("JPEG", 80, 60))
    return {"project": project, "dataset": ds, "png": png, "jpg": jpg}


# -- projects, datasets, meta -------------------------------------------------------------------


def test_projects_datasets_lookup_and_meta(world: World) -> None:
    c = world.admin
    project = _project(world, "cats", description="cat pictures")
    assert project["name"] == "cats" and project["type"] == "images"
    assert project["team_id"] == world.team_id and project["workspace_id"] == world.workspace_id
    assert (project["datasets_count"], project["images_count"]) == (0, 0)

    e = _err(
        c.http.post("/projects", json={"workspace_id": world.workspace_id, "name": "cats"}), 409
    )
    assert (
        e["field"] == "name"
        and "cats" in e["message"]
        and "change_name_if_conflict" in e["message"]
    )
    again = _project(world, "cats", change_name_if_conflict=True)
    third = _project(world, "cats", change_name_if_conflict=True)
    assert (again["name"], third["name"]) == ("cats 1", "cats 2")
    odd = _project(world, "100%_sure")  # LIKE wildcards in a name are plain characters
    odd1 = _project(world, "100%_sure", change_name_if_conflict=True)
    assert odd1["name"] == "100%_sure 1"

    listed = c.ok("GET", "/projects", params={"workspace_id": world.workspace_id})
    ids = [project["id"], again["id"], third["id"], odd["id"], odd1["id"]]
    assert [p["id"] for p in listed] == ids
    assert c.ok("GET", f"/projects/{project['id']}") == project
    found = c.ok(
        "GET", "/projects/lookup", params={"workspace_id": world.workspace_id, "name": "cats 1"}
    )
    assert found["id"] == again["id"]
    e = _err(
        c.http.get("/projects/lookup", params={"workspace_id": world.workspace_id, "name": "dogs"}),
        404,
    )
    assert "dogs" in e["message"]
    e = _err(
        c.http.post("/projects", json={"workspace_id": world.workspace_id, "name": "a/b"}), 422
    )
    assert e["field"] == "name"
    e = _err(c.http.post("/projects", json={"workspace_id": 10**9, "name": "x"}), 404)
    assert e["field"] == "workspace_id"

    # datasets, with the same naming rules, and counted in the project's info
    ds = _dataset(world, project["id"], "train", description="the training set")
    assert ds["project_id"] == project["id"] and ds["images_count"] == 0
    assert ds["team_id"] == world.team_id and ds["workspace_id"] == world.workspace_id
    e = _err(c.http.post("/datasets", json={"project_id": project["id"], "name": "train"}), 409)
    assert e["field"] == "name"
    ds1 = _dataset(world, project["id"], "train", change_name_if_conflict=True)
    assert ds1["name"] == "train 1"
    _dataset(world, again["id"], "train")  # the same name in another project is fine
    assert c.ok("GET", f"/datasets/{ds['id']}") == ds
    assert [d["id"] for d in c.ok("GET", "/datasets", params={"project_id": project["id"]})] == [
        ds["id"],
        ds1["id"],
    ]
    assert c.ok("GET", f"/projects/{project['id']}")["datasets_count"] == 2
    _err(c.http.get("/datasets/999999999"), 404)

    # the meta: empty at first; colours are filled in from the palette
    assert c.ok("GET", f"/projects/{project['id']}/meta") == {"classes": [], "tags": []}
    meta = c.ok("PUT", f"/projects/{project['id']}/meta", json=META)
    assert meta["classes"][0]["color"] == "#E53935"
    assert all(k["color"] for k in meta["classes"])
    assert c.ok("GET", f"/projects/{project['id']}/meta") == meta
    e = _err(
        c.http.put(
            f"/projects/{project['id']}/meta",
            json={"classes": [{"name": "x", "shape": "circle"}], "tags": []},
        ),
        422,
    )
    assert e["field"].startswith("classes")
    e = _err(
        c.http.put(
            f"/projects/{project['id']}/meta", json={"tags": [{"name": "a"}, {"name": "a"}]}
        ),
        422,
    )
    assert "twice" in e["message"]
    assert c.ok("GET", f"/projects/{project['id']}/meta") == meta


# -- images -------------------------------------------------------------------------------------


def test_upload_list_download_delete_images(world: World) -> None:
    c = world.admin
    project = _project(world)
    ds = _dataset(world, project["id"])
    png_bytes = _image("PNG", 64, 48)
    jpg_bytes = _image("JPEG", 80, 60)
    png = _ok_upload(c, ds["id"], "a.png", png_bytes)
    jpg = _ok_upload(c, ds["id"], "b.jpg", jpg_bytes)
    assert (png["width"], png["height"], png["mime"], png["size"]) == (
        64,
        48,
        "image/png",
        len(png_bytes),
    )
    assert (jpg["width"], jpg["height"], jpg["mime"]) == (80, 60, "image/jpeg")
    assert png["dataset_id"] == ds["id"] and png["project_id"] == project["id"]
    assert (png["tags"], png["objects_count"]) == ([], 0)

    # the bytes come back as they went, and a new image has an empty annotation of its size
    r = c.http.get(f"/images/{png['id']}/file")
    assert r.status_code == 200 and r.content == png_bytes
    assert r.headers["content-type"] == "image/png"
    assert c.http.get(f"/images/{jpg['id']}/file").content == jpg_bytes
    ann = c.ok("GET", f"/images/{jpg['id']}/annotation")
    assert ann["annotation"] == {"size": {"width": 80, "height": 60}, "tags": [], "objects": []}
    assert (ann["image_id"], ann["image_name"], ann["dataset_id"]) == (jpg["id"], "b.jpg", ds["id"])
    assert c.ok("GET", f"/images/{png['id']}") == png

    # other formats Pillow reads
    for fmt, mime in [
        ("BMP", "image/bmp"),
        ("GIF", "image/gif"),
        ("TIFF", "image/tiff"),
        ("WEBP", "image/webp"),
    ]:
        info = _ok_upload(c, ds["id"], f"x.{fmt.lower()}", _image(fmt, 10, 7))
        assert (info["mime"], info["width"], info["height"]) == (mime, 10, 7)

    # names: 409, or a free name with the extension kept last
    e = _err(_upload(c, ds["id"], "a.png", png_bytes), 409)
    assert e["field"] == "name" and "a.png" in e["message"]
    twin = _ok_upload(c, ds["id"], "a.png", png_bytes, change_name_if_conflict=True)
    assert twin["name"] == "a 1.png" and twin["sha256"] == png["sha256"]

    # pages by id
    more = [_ok_upload(c, ds["id"], f"n{i}.png", _image("PNG", 8 + i, 8)) for i in range(5)]
    everything = _all_images(c, ds["id"])
    assert len(everything) == 12
    assert [im["id"] for im in everything] == sorted(im["id"] for im in everything)
    paged = _all_images(c, ds["id"], limit=3)
    assert paged == everything
    first = c.ok("GET", "/images", params={"dataset_id": ds["id"], "limit": 3})
    assert len(first["items"]) == 3 and first["next_cursor"] == str(first["items"][-1]["id"])
    last = c.ok("GET", "/images", params={"dataset_id": ds["id"], "cursor": more[-1]["id"]})
    assert last == {"items": [], "next_cursor": None, "total": None}
    _err(c.http.get("/images", params={"dataset_id": ds["id"], "limit": 1001}), 422)
    assert c.ok("GET", f"/datasets/{ds['id']}")["images_count"] == 12
    assert c.ok("GET", f"/projects/{project['id']}")["images_count"] == 12

    # two images share one file; removing one keeps the file for the other
    store = world.server.home / "images"
    blob = store / png["sha256"][:2] / png["sha256"]
    assert blob.read_bytes() == png_bytes
    assert c.http.delete(f"/images/{png['id']}").status_code == 204
    _err(c.http.get(f"/images/{png['id']}"), 404)
    assert blob.exists() and c.http.get(f"/images/{twin['id']}/file").content == png_bytes
    assert c.http.delete(f"/images/{twin['id']}").status_code == 204
    assert not blob.exists()
    assert c.ok("GET", f"/datasets/{ds['id']}")["images_count"] == 10

    # removing the project removes its datasets, images and their files
    jpg_blob = store / jpg["sha256"][:2] / jpg["sha256"]
    assert jpg_blob.exists()
    assert c.http.delete(f"/projects/{project['id']}").status_code == 204
    _err(c.http.get(f"/projects/{project['id']}"), 404)
    _err(c.http.get(f"/datasets/{ds['id']}"), 404)
    _err(c.http.get(f"/images/{jpg['id']}"), 404)
    _err(c.http.get(f"/images/{jpg['id']}/file"), 404)
    assert not jpg_blob.exists()
    assert [p.name for p in store.rglob("*") if p.is_file()] == []


# -- annotations --------------------------------------------------------------------------------


def test_annotation_round_trip(world: World, filled: dict[str, Any]) -> None:
    c = world.admin
    png, jpg = filled["png"], filled["jpg"]
    ann_png = _annotation(64, 48)
    ann_jpg = {**_annotation(80, 60), "tags": ["val"]}
    written = c.ok(
        "PUT",
        "/annotations",
        json={
            "items": [
                {"image_id": png["id"], "annotation": ann_png},
                {"image_id": jpg["id"], "annotation": ann_jpg},
            ]
        },
    )
    assert [w["image_id"] for w in written] == [png["id"], jpg["id"]]
    assert written[0]["annotation"] == ann_png

    # the order asked, twice the same id allowed
    back = c.ok(
        "POST", "/annotations/download", json={"image_ids": [jpg["id"], png["id"], jpg["id"]]}
    )
    assert [b["image_id"] for b in back] == [jpg["id"], png["id"], jpg["id"]]
    assert back[0]["annotation"] == ann_jpg and back[1]["annotation"] == ann_png
    assert c.ok("GET", f"/images/{png['id']}/annotation")["annotation"] == ann_png
    bitmap = back[1]["annotation"]["objects"][2]["geometry"]
    raw = base64.b64decode(bitmap["data"])
    with Image.open(io.BytesIO(raw)) as mask:
        assert mask.size == (4, 3)
        assert [(x, y) for y in range(3) for x in range(4) if mask.getpixel((x, y))] == [
            (0, 0),
            (1, 1),
            (3, 2),
        ]

    info = c.ok("GET", f"/images/{png['id']}")
    assert (info["tags"], info["objects_count"]) == (["train"], 3)
    listed = {im["id"]: im for im in _all_images(c, filled["dataset"]["id"])}
    assert (listed[jpg["id"]]["tags"], listed[jpg["id"]]["objects_count"]) == (["val"], 3)

    # an annotation can be emptied again
    empty = {"size": {"width": 64, "height": 48}, "tags": [], "objects": []}
    c.ok("PUT", "/annotations", json={"items": [{"image_id": png["id"], "annotation": empty}]})
    assert c.ok("GET", f"/images/{png['id']}/annotation")["annotation"] == empty
    assert c.ok("GET", f"/images/{png['id']}")["objects_count"] == 0


def test_every_bad_write_is_refused_and_changes_nothing(
    world: World, filled: dict[str, Any]
) -> None:
    c = world.admin
    project, ds, png, jpg = filled["project"], filled["dataset"], filled["png"], filled["jpg"]
    pid = project["id"]
    # a starting state with annotations in it
    c.ok(
        "PUT",
        "/annotations",
        json={"items": [{"image_id": jpg["id"], "annotation": _annotation(80, 60)}]},
    )
    before = _state(c, pid)
    files_before = sorted(p.name for p in (world.server.home / "images").rglob("*") if p.is_file())

    def refused(r: Any, status: int, field: str, *words: str) -> None:
        e = _err(r, status)
        assert e["field"] == field, e
        for word in words:
            assert word in e["message"], (word, e)
        assert _state(c, pid) == before

    # uploads that are not images, or not acceptable
    refused(_upload(c, ds["id"], "c.png", b"this is not an image"), 422, "file", "not an image")
    refused(_upload(c, ds["id"], "c.png", b""), 422, "file", "empty")
    refused(_upload(c, ds["id"], "c.png", _image("PNG", 30, 30)[:60]), 422, "file")
    ico = io.BytesIO()
    Image.new("RGB", (16, 16)).save(ico, format="ICO")
    refused(_upload(c, ds["id"], "c.ico", ico.getvalue()), 422, "file", "ICO")
    refused(_upload(c, ds["id"], "a/b.png", _image("PNG", 5, 5)), 422, "name")
    refused(_upload(c, ds["id"], "", _image("PNG", 5, 5)), 422, "name")
    refused(
        c.http.post("/images", data={"dataset_id": str(ds["id"]), "name": "x.png"}), 422, "file"
    )
    refused(_upload(c, 10**9, "c.png", _image("PNG", 5, 5)), 404, "dataset_id")
    refused(_upload(c, ds["id"], "a.png", _image("PNG", 5, 5)), 409, "name")
    too_big = b"\x89PNG" + bytes(64 * 1024 * 1024)
    refused(_upload(c, ds["id"], "big.png", too_big), 422, "file", "64 MiB")
    assert (
        sorted(p.name for p in (world.server.home / "images").rglob("*") if p.is_file())
        == files_before
    )

    def put(*anns: tuple[int, dict[str, Any]]) -> Any:
        items = [{"image_id": i, "annotation": a} for i, a in anns]
        return c.http.put("/annotations", json={"items": items})

    def changed(path: list[Any], value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
        ann = _annotation(64, 48) if base is None else base
        node: Any = ann
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return ann

    geometry = "items[0].annotation.objects[{}].geometry"
    cases: list[tuple[dict[str, Any], str, tuple[str, ...]]] = [
        (
            changed(["objects", 0, "class"], "tree"),
            "items[0].annotation.objects[0].class",
            ("tree", "add it"),
        ),
        (
            changed(["objects", 1, "geometry", "exterior", 2], [64, 47]),
            geometry.format(1) + ".exterior[2]",
            ("(64, 47)", "64x48"),
        ),
        (
            changed(["objects", 1, "geometry", "interiors", 0, 1], [9, -1]),
            geometry.format(1) + ".interiors[0][1]",
            ("outside",),
        ),
        (
            changed(["objects", 0, "geometry", "bottom"], 48),
            geometry.format(0),
            ("outside",),
        ),
        (changed(["size"], {"width": 48, "height": 64}), "items[0].annotation.size", ("64x48",)),
        (
            changed(
                ["objects", 0, "geometry"],
                {"type": "polygon", "exterior": [[1, 1], [5, 1], [5, 5]]},
            ),
            geometry.format(0) + ".type",
            ("rectangle",),
        ),
        (changed(["tags"], ["test"]), "items[0].annotation.tags[0]", ("test",)),
        (
            changed(["objects", 2, "tags"], ["val", "nope"]),
            "items[0].annotation.objects[2].tags[1]",
            ("nope",),
        ),
        (
            changed(["objects", 2, "geometry", "data"], "###"),
            geometry.format(2) + ".data",
            ("base64",),
        ),
        (
            changed(
                ["objects", 2, "geometry", "data"], base64.b64encode(_image("JPEG", 4, 4)).decode()
            ),
            geometry.format(2) + ".data",
            ("PNG",),
        ),
        (
            changed(["objects", 2, "geometry", "data"], _mask_png(3, 3, set())),
            geometry.format(2) + ".data",
            ("no set pixel",),
        ),
        (
            changed(["objects", 2, "geometry", "origin"], [62, 46]),
            geometry.format(2),
            ("does not fit",),
        ),
    ]
    for ann, field, words in cases:
        refused(put((png["id"], ann)), 422, field, *words)

    # a batch where only the last item is bad writes nothing, not even the good ones
    good_png = _annotation(64, 48)
    good_jpg = {**_annotation(80, 60), "tags": ["val"]}
    bad_last = changed(["objects", 1, "geometry", "exterior", 0], [80, 0], _annotation(80, 60))
    refused(
        put((png["id"], good_png), (jpg["id"], good_jpg), (png["id"], good_png)),
        422,
        "items[2].image_id",
        "twice",
    )
    third = _ok_upload(c, ds["id"], "c.png", _image("PNG", 80, 60))
    before = _state(c, pid)
    refused(
        put((png["id"], good_png), (third["id"], good_jpg), (jpg["id"], bad_last)),
        422,
        "items[2].annotation.objects[1].geometry.exterior[0]",
        "(80, 0)",
    )
    refused(put((png["id"], good_png), (10**9, good_png)), 404, "items[1].image_id")
    # wrong structure is refused by the wire model, naming the place
    e = _err(put((png["id"], changed(["objects", 0, "geometry", "right"], 0))), 422)
    assert e["field"].startswith("items[0].annotation.objects[0].geometry")
    e = _err(c.http.put("/annotations", json={"items": []}), 422)
    assert e["field"] == "items"
    assert _state(c, pid) == before

    # and the meta: a class or tag in use cannot go, nor a used class change its shape
    without_box = {**META, "classes": META["classes"][1:]}
    refused(
        c.http.put(f"/projects/{pid}/meta", json=without_box),
        409,
        "classes",
        "'box'",
        "1 object(s) on 1 image",
    )
    reshaped = {**META, "classes": [{"name": "box", "shape": "polygon"}, *META["classes"][1:]]}
    refused(
        c.http.put(f"/projects/{pid}/meta", json=reshaped),
        409,
        "classes[0].shape",
        "'box'",
        "polygon",
    )
    refused(
        c.http.put(
            f"/projects/{pid}/meta", json={**META, "tags": [{"name": "val"}, {"name": "occluded"}]}
        ),
        409,
        "tags",
        "'train'",
    )
    refused(
        c.http.put(f"/projects/{pid}/meta", json={"classes": [], "tags": []}),
        409,
        "classes",
        "'box'",
    )
    # what no annotation uses can go (and come back)
    c.ok(
        "PUT",
        f"/projects/{pid}/meta",
        json={**META, "tags": [t for t in META["tags"] if t["name"] != "val"]},
    )
    c.ok("PUT", f"/projects/{pid}/meta", json=META)
    # once its objects are gone, a class can go too
    c.ok(
        "PUT",
        "/annotations",
        json={
            "items": [{"image_id": jpg["id"], "annotation": {"size": {"width": 80, "height": 60}}}]
        },
    )
    c.ok("PUT", f"/projects/{pid}/meta", json={"classes": [], "tags": []})


# -- who may do what ----------------------------------------------------------------------------


def test_viewer_reads_others_get_404(world: World, filled: dict[str, Any]) -> None:
    pid, dsid = filled["project"]["id"], filled["dataset"]["id"]
    png = filled["png"]
    suffix = uuid.uuid4().hex[:8]
    viewer = world.member(f"viewer-{suffix}", "viewer")
    developer = world.member(f"dev-{suffix}", "developer")
    world.admin.ok("POST", "/users", json={"login": f"stranger-{suffix}"})
    uid = next(
        u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == f"stranger-{suffix}"
    )
    stranger = Client(
        world.server.url,
        world.admin.ok("POST", "/tokens", json={"name": "s", "user_id": uid})["token"],
    )
    stranger.ok("POST", "/teams", json={"name": "stranger's own"})
    _, agent_token = world.new_agent_token(f"agent-{suffix}")
    agent = Client(world.server.url, agent_token)
    before = _state(world.admin, pid)
    ann = _annotation(64, 48)

    reads: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/projects", {"params": {"workspace_id": world.workspace_id}}),
        (
            "GET",
            "/projects/lookup",
            {"params": {"workspace_id": world.workspace_id, "name": "shapes"}},
        ),
        ("GET", f"/projects/{pid}", {}),
        ("GET", f"/projects/{pid}/meta", {}),
        ("GET", "/datasets", {"params": {"project_id": pid}}),
        ("GET", f"/datasets/{dsid}", {}),
        ("GET", "/images", {"params": {"dataset_id": dsid}}),
        ("GET", f"/images/{png['id']}", {}),
        ("GET", f"/images/{png['id']}/file", {}),
        ("GET", f"/images/{png['id']}/annotation", {}),
        ("POST", "/annotations/download", {"json": {"image_ids": [png["id"]]}}),
    ]
    writes: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/projects", {"json": {"workspace_id": world.workspace_id, "name": "mine"}}),
        ("DELETE", f"/projects/{pid}", {}),
        ("PUT", f"/projects/{pid}/meta", {"json": {"classes": [], "tags": []}}),
        ("POST", "/datasets", {"json": {"project_id": pid, "name": "mine"}}),
        ("DELETE", f"/images/{png['id']}", {}),
        ("PUT", "/annotations", {"json": {"items": [{"image_id": png["id"], "annotation": ann}]}}),
    ]
    upload = {"dataset_id": str(dsid), "name": "v.png"}
    for method, path, kw in reads:
        r = viewer.http.request(method, path, **kw)
        assert r.status_code == 200, (method, path, r.text)
    for method, path, kw in writes:
        e = _err(viewer.http.request(method, path, **kw), 403)
        assert "viewer" in e["message"], (method, path, e)
    e = _err(
        viewer.http.post("/images", data=upload, files={"file": ("v.png", _image("PNG", 5, 5))}),
        403,
    )
    # even with a bad file, the viewer hears of its role first
    e = _err(viewer.http.post("/images", data=upload, files={"file": ("v.png", b"nope")}), 403)

    for who in (stranger, agent):
        for method, path, kw in reads + writes:
            on_workspace = path in ("/projects", "/projects/lookup")
            expected_field = "workspace_id" if on_workspace else None
            e = _err(who.http.request(method, path, **kw), 404)
            if expected_field:
                assert e["field"] == expected_field, (method, path, e)
            assert "not found" in e["message"], (method, path, e)
        _err(
            who.http.post("/images", data=upload, files={"file": ("v.png", _image("PNG", 5, 5))}),
            404,
        )
        _err(who.http.post("/images", data=upload, files={"file": ("v.png", b"nope")}), 404)
    assert _state(world.admin, pid) == before

    # a developer writes
    info = _ok_upload(developer, dsid, "dev.png", _image("PNG", 64, 48))
    developer.ok(
        "PUT", "/annotations", json={"items": [{"image_id": info["id"], "annotation": ann}]}
    )
    developer.ok("DELETE", f"/images/{info['id']}")
    # an image of a team one is not in, in a batch, is a 404 naming it (nothing is written)
    other = stranger.ok("GET", "/teams")[0]
    ows = stranger.ok("POST", f"/teams/{other['id']}/workspaces", json={"name": "w"})
    oproj = stranger.ok("POST", "/projects", json={"workspace_id": ows["id"], "name": "theirs"})
    stranger.ok("PUT", f"/projects/{oproj['id']}/meta", json=META)
    ods = stranger.ok("POST", "/datasets", json={"project_id": oproj["id"], "name": "d"})
    theirs = _ok_upload(stranger, ods["id"], "t.png", _image("PNG", 64, 48))
    e = _err(
        developer.http.put(
            "/annotations",
            json={
                "items": [
                    {"image_id": png["id"], "annotation": ann},
                    {"image_id": theirs["id"], "annotation": ann},
                ]
            },
        ),
        404,
    )
    assert e["field"] == "items[1].image_id"
    e = _err(
        developer.http.post("/annotations/download", json={"image_ids": [png["id"], theirs["id"]]}),
        404,
    )
    assert e["field"] == "image_ids[1]"
    assert _state(world.admin, pid) == before


# -- the schema ---------------------------------------------------------------------------------


def _database_urls(tmp: Path) -> list[str]:
    wanted = os.environ.get("APPYARD_TEST_DATABASES", "sqlite,postgres").split(",")
    urls = [f"sqlite:///{tmp / 'schema.db'}"] if "sqlite" in wanted else []
    return urls + (["postgres"] if "postgres" in wanted and pg_available() else [])


def test_migrations_match_the_models(tmp_path: Path) -> None:
    """Upgrading to head, down one step and up again gives exactly the tables of models.py."""
    for url in _database_urls(tmp_path):
        if url == "postgres":
            with pg_database() as pg_url:
                _check_schema(pg_url)
        else:
            _check_schema(url)


def _check_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        cfg = alembic_config(engine)
        command.upgrade(cfg, "head")
        command.downgrade(cfg, "0001")
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], diff
    finally:
        engine.dispose()


def test_racing_uploads_of_one_name(world: World) -> None:
    """Concurrent uploads under one name: one wins and the others get a 409, or each gets a
    free name of its own; no upload fails otherwise."""
    project = _project(world)
    ds = _dataset(world, project["id"])
    token = world.admin.http.headers["Authorization"].split()[1]
    clients = [Client(world.server.url, token) for _ in range(8)]
    data = [_image("PNG", 20 + i, 20) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        plain = list(
            pool.map(lambda i: _upload(clients[i], ds["id"], "same.png", data[i]), range(8))
        )
        assert sorted(r.status_code for r in plain) == [201] + [409] * 7, [r.text for r in plain]
        renamed = list(
            pool.map(
                lambda i: _upload(
                    clients[i], ds["id"], "free.png", data[i], change_name_if_conflict=True
                ),
                range(8),
            )
        )
    assert all(r.status_code == 201 for r in renamed), [r.text for r in renamed]
    names = sorted(r.json()["name"] for r in renamed)
    assert names == sorted(["free.png"] + [f"free {n}.png" for n in range(1, 8)])
    for c in clients:
        c.http.close()


# -- image files: none without an image ---------------------------------------------------------


def _unique_images(n: int) -> list[bytes]:
    """``n`` PNG files of bytes no other test uploads."""
    seed = uuid.uuid4().bytes
    return [_image("PNG", 16 + i, 12, (seed[0], seed[1], seed[2] ^ i)) for i in range(n)]


def _stored(world: World, data: list[bytes]) -> list[bytes]:
    """Which of ``data`` have a file in the server's image storage (temporary files too)."""
    root = world.server.home / "images"
    shas = [hashlib.sha256(d).hexdigest() for d in data]
    on_disk = [p.name for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return [d for d, sha in zip(data, shas, strict=True) if any(sha in n for n in on_disk)]


def test_uploads_losing_a_name_race_leave_no_file(world: World) -> None:
    """Different images uploaded at once under one free name: one wins, the others are a 409
    from the insert (each passed the early name check) and their files are removed again."""
    project = _project(world)
    ds = _dataset(world, project["id"])
    token = world.admin.http.headers["Authorization"].split()[1]
    clients = [Client(world.server.url, token) for _ in range(16)]
    data = _unique_images(16)
    try:
        for round_ in range(3):
            name = f"same-{round_}.png"
            with ThreadPoolExecutor(16) as pool:
                answers = list(
                    pool.map(lambda i, n=name: _upload(clients[i], ds["id"], n, data[i]), range(16))
                )
            codes = sorted(r.status_code for r in answers)
            assert codes == [201] + [409] * 15, [r.text for r in answers]
            for r in answers:
                if r.status_code == 409:
                    assert r.json()["error"]["field"] == "name"
            # exactly the files of images that exist are stored
            images = _all_images(world.admin, ds["id"])
            stored = {hashlib.sha256(d).hexdigest() for d in _stored(world, data)}
            assert stored == {im["sha256"] for im in images} and len(images) == round_ + 1
    finally:
        for c in clients:
            c.http.close()


def test_uploads_racing_the_projects_deletion_leave_no_file(world: World) -> None:
    """Uploads into a project being deleted either land before (and go with the project) or
    are a 404; no file is left either way."""
    project = _project(world)
    ds = _dataset(world, project["id"])
    token = world.admin.http.headers["Authorization"].split()[1]
    clients = [Client(world.server.url, token) for _ in range(12)]
    data = _unique_images(12)
    try:
        with ThreadPoolExecutor(13) as pool:
            uploads = [
                pool.submit(_upload, clients[i], ds["id"], f"{i}.png", data[i]) for i in range(12)
            ]
            deleted = pool.submit(world.admin.http.delete, f"/projects/{project['id']}")
            answers = [u.result() for u in uploads]
        assert deleted.result().status_code == 204, deleted.result().text
        assert {r.status_code for r in answers} <= {201, 404}, [r.text for r in answers]
        _err(world.admin.http.get(f"/projects/{project['id']}"), 404)
        assert _stored(world, data) == []
    finally:
        for c in clients:
            c.http.close()


def test_collect_keeps_a_file_an_upload_committed_meanwhile(tmp_path: Path) -> None:
    """``ImageStore.collect`` moves a file aside, then asks again: a record committed in
    between (an upload of the same bytes) keeps its file; a failed second look keeps it too."""
    store = ImageStore(tmp_path / "images")
    data = _image("PNG", 9, 9)
    sha = hashlib.sha256(data).hexdigest()
    path = store.put(sha, data)
    looks: list[list[str]] = []

    def committed_between(batch: list[str]) -> set[str]:
        looks.append(batch)
        return set() if len(looks) == 1 else set(batch)  # the upload commits after look 1

    assert store.collect([sha], committed_between) == 0
    assert len(looks) == 2 and path.read_bytes() == data

    def second_look_fails(batch: list[str]) -> set[str]:
        looks.append(batch)
        if len(looks) == 4:
            raise RuntimeError("the database went away")
        return set()

    with pytest.raises(RuntimeError):
        store.collect([sha], second_look_fails)
    assert path.read_bytes() == data
    assert store.collect([sha], lambda batch: set()) == 1
    assert not path.exists()
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


# -- annotation batches: checked without the write lock -----------------------------------------


def _database_of(world: World) -> Database:
    url = world.server.database_url or f"sqlite:///{world.server.home / 'appyard.db'}"
    return Database(url)


@pytest.fixture
def service(world: World) -> Iterator[tuple[Database, Principal]]:
    """The live server's own database, opened here, and the admin acting on it: to run the
    two halves of an annotation upload with other writes (over HTTP) in between."""
    db = _database_of(world)
    token = world.admin.http.headers["Authorization"].split()[1]
    with db.reader() as s:
        principal = authenticate(s, token)
    yield db, principal
    db.dispose()


def test_meta_changed_between_check_and_write(
    world: World, filled: dict[str, Any], service: tuple[Database, Principal]
) -> None:
    """``PUT /annotations`` checks a batch in a read transaction, then writes it in a short
    write transaction; what changed in between is looked at again there."""
    db, principal = service
    c = world.admin
    pid, png, jpg = filled["project"]["id"], filled["png"], filled["jpg"]

    def checked(*anns: tuple[int, dict[str, Any]]) -> svc.CheckedBatch:
        body = AnnotationUpload.model_validate(
            {"items": [{"image_id": i, "annotation": a} for i, a in anns]}
        )
        with db.reader() as s:
            targets = svc.annotation_targets(s, principal, body=body)
        return svc.check_annotations(targets)

    def write(batch: svc.CheckedBatch) -> list[Any]:
        with db.session() as s:
            return svc.write_annotations(s, principal, batch=batch)

    def meta(classes: list[dict[str, Any]], tags: list[str]) -> None:
        c.ok(
            "PUT",
            f"/projects/{pid}/meta",
            json={"classes": classes, "tags": [{"name": t} for t in tags]},
        )

    classes = META["classes"]
    tags = [t["name"] for t in META["tags"]]
    ann_png = _annotation(64, 48)
    box_jpg = {
        "size": {"width": 80, "height": 60},
        "tags": ["val"],
        "objects": [
            {
                "class": "extra",
                "geometry": {"type": "rectangle", "left": 0, "top": 0, "right": 5, "bottom": 5},
            }
        ],
    }

    # a meta that only grew meanwhile: the batch is written as checked
    batch = checked((png["id"], ann_png))
    meta([*classes, {"name": "extra", "shape": "rectangle"}], tags)
    [written] = write(batch)
    assert written.annotation == c.ok("GET", f"/images/{png['id']}/annotation")["annotation"]
    assert c.ok("GET", f"/images/{png['id']}")["objects_count"] == 3
    before = _state(c, pid)

    # a class the batch uses removed meanwhile: a 422 naming the field, nothing written
    batch = checked((png["id"], ann_png), (jpg["id"], box_jpg))
    meta(classes, tags)
    with pytest.raises(BadRequestError) as refused:
        write(batch)
    assert refused.value.field == "items[1].annotation.objects[0].class"
    assert "'extra'" in refused.value.message
    after = _state(c, pid)
    assert (after["images"], after["annotations"]) == (before["images"], before["annotations"])

    # its shape changed meanwhile
    meta([*classes, {"name": "extra", "shape": "rectangle"}], tags)
    batch = checked((jpg["id"], box_jpg))
    meta([*classes, {"name": "extra", "shape": "polygon"}], tags)
    with pytest.raises(BadRequestError) as refused:
        write(batch)
    assert refused.value.field == "items[0].annotation.objects[0].geometry.type"

    # a tag it uses removed meanwhile (the meta may drop it: no annotation uses it yet)
    meta([*classes, {"name": "extra", "shape": "rectangle"}], tags)
    batch = checked((jpg["id"], box_jpg))
    meta([*classes, {"name": "extra", "shape": "rectangle"}], ["train", "occluded"])
    with pytest.raises(BadRequestError) as refused:
        write(batch)
    assert refused.value.field == "items[0].annotation.tags[0]"
    ann = c.ok("GET", f"/images/{jpg['id']}/annotation")["annotation"]
    assert ann == {"size": {"width": 80, "height": 60}, "tags": [], "objects": []}

    # an image removed meanwhile: a 404 naming its item, nothing written
    meta([*classes, {"name": "extra", "shape": "rectangle"}], tags)
    batch = checked((png["id"], _annotation(64, 48)), (jpg["id"], box_jpg))
    c.ok("DELETE", f"/images/{jpg['id']}")
    with pytest.raises(NotFoundError) as missing:
        write(batch)
    assert missing.value.field == "items[1].image_id"

    # and a batch checked against the meta it is written with goes through as it is
    fresh = _ok_upload(c, filled["dataset"]["id"], "fresh.png", _image("PNG", 80, 60))
    write(checked((png["id"], ann_png), (fresh["id"], box_jpg)))
    got = c.ok("POST", "/annotations/download", json={"image_ids": [fresh["id"]]})
    assert got[0]["annotation"]["objects"][0]["class"] == "extra"


def test_annotation_batch_body_is_capped(world: World, filled: dict[str, Any]) -> None:
    """A PUT /annotations body over 64 MiB is a 413 on ``body``, refused before it is parsed:
    declared larger, or counted as it comes; nothing is written."""
    c = world.admin
    pid = filled["project"]["id"]
    before = _state(c, pid)
    limit = svc.MAX_ANNOTATIONS_BODY
    assert limit == 64 * 1024 * 1024
    big = b'{"items": [' + b" " * limit + b"]}"
    r = c.http.put("/annotations", content=big, headers={"content-type": "application/json"})
    e = _err(r, 413)
    assert e["field"] == "body" and e["code"] == "too_large" and "64 MiB" in e["message"], e

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts
        yield b'{"items": ['
        for _ in range(65):
            yield b" " * (1024 * 1024)
        yield b"]}"

    r = c.http.put("/annotations", content=chunks(), headers={"content-type": "application/json"})
    e = _err(r, 413)
    assert e["field"] == "body" and e["code"] == "too_large", e
    # without a token: a 401, whatever the body
    anonymous = Client(world.server.url, None)
    _err(anonymous.http.put("/annotations", content=big), 401)
    anonymous.http.close()
    assert _state(c, pid) == before

    # below the cap all is as before: a wire error names the field, a good batch is written
    as_json = {"content-type": "application/json"}
    e = _err(c.http.put("/annotations", content=b'{"items": [}', headers=as_json), 422)
    assert e["field"] == "body" and "not valid JSON" in e["message"], e
    e = _err(c.http.put("/annotations", json={"items": []}), 422)
    assert e["field"] == "items"
    item = {"image_id": filled["png"]["id"], "annotation": _annotation(64, 48)}
    padded = b'{"items": [' + _json(item) + b"]" + b" " * (limit - 1024 * 1024) + b"}"
    [info] = c.ok("PUT", "/annotations", content=padded, headers=as_json)
    assert info["annotation"]["objects"][0]["class"] == "box"


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


# -- odd input is a 4xx, never a 500 ------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` (1-bit) with one tiny IDAT: a decompression bomb
    by its header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_odd_input_is_refused_not_a_crash(world: World, filled: dict[str, Any]) -> None:
    c = world.admin
    pid, dsid, png = filled["project"]["id"], filled["dataset"]["id"], filled["png"]
    before = _state(c, pid)
    # an image whose header claims more pixels than Pillow handles safely
    e = _err(_upload(c, dsid, "bomb.png", _png_header(60_000, 60_000)), 422)
    assert e["field"] == "file" and "too many pixels" in e["message"], e
    # PostgreSQL cannot store a NUL: refused everywhere, never a 500
    e = _err(
        c.http.post(
            "/projects",
            json={"workspace_id": world.workspace_id, "name": "nul", "description": "a\x00b"},
        ),
        422,
    )
    assert e["field"] == "description"
    e = _err(
        c.http.post("/datasets", json={"project_id": pid, "name": "nul", "description": "\x00"}),
        422,
    )
    assert e["field"] == "description"
    e = _err(
        c.http.get(
            "/projects/lookup", params={"workspace_id": world.workspace_id, "name": "a\x00"}
        ),
        404,
    )
    assert e["field"] == "name"
    # a coordinate too large for a float
    ann = _annotation(64, 48)
    ann["objects"][0]["geometry"]["right"] = 10**400
    r = c.http.put(
        "/annotations",
        content=b'{"items": [' + _json({"image_id": png["id"], "annotation": ann}) + b"]}",
        headers={"content-type": "application/json"},
    )
    e = _err(r, 422)
    assert e["field"].startswith("items[0].annotation"), e
    assert _state(c, pid) == before

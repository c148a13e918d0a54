"""The bundled "Export to Pascal VOC" app end to end: a project built through the SDK, the app
run by a real agent, its tar downloaded from team files and read back, file by file and as a VOC
reader reads it (``tests/voc_reader.py``)."""

from __future__ import annotations

import io
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import appyard as ay
from appyard.errors import BadRequestError, TaskFinishedWithError
from appyard.schemas.annotation import PALETTE, encode_bitmap
from tests.e2e.conftest import online_agent
from tests.support import Client, ServerProc, World, wait_for
from tests.voc_reader import VocFolder, check_against_project

S = ay.Status
APP = Path(ay.__file__).parent / "ecosystem" / "export-to-pascal-voc"
DEFAULTS = {"pascalContourThickness": 3, "trainSplitCoef": 0.8, "addPrefixToImages": True}
COLORS = {"box": "#E53935", "road": "#1E88E5", "blob": "#43A047"}
CLASS_INDEX = {"box": 1, "road": 2, "blob": 3}  # the meta's order, from 1
NEUTRAL = (224, 224, 192)
#: the folders the archive's one top folder holds the VOC folders in
VOC_DIR = "VOCdevkit/VOC"
SPLITS = ("train", "val", "trainval")

# a.png's rectangle: the contour is measured across its straight edges
LEFT, TOP, RIGHT, BOTTOM = 16, 12, 47, 35
RECT = {"type": "rectangle", "left": LEFT, "top": TOP, "right": RIGHT, "bottom": BOTTOM}
# b.jpg's polygon with a hole, and a bitmap on top of it (a later object covers an earlier one)
ROAD = {
    "type": "polygon",
    "exterior": [[5, 5], [60, 5], [60, 50], [5, 50]],
    "interiors": [[[20, 20], [40, 20], [40, 35], [20, 35]]],
}
BLOB_W, BLOB_H = 16, 14
BLOB_PIXELS = {(x, y) for x in range(2, 14) for y in range(1, 13)}  # inside the 16x14 PNG
BLOB = {
    "type": "bitmap",
    "origin": [50, 40],
    "data": encode_bitmap(
        BLOB_W,
        BLOB_H,
        bytes(1 if (x, y) in BLOB_PIXELS else 0 for y in range(BLOB_H) for x in range(BLOB_W)),
    ),
}


@dataclass
class Img:
    dataset: str
    name: str
    size: tuple[int, int]
    data: bytes
    tags: list[str] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    # the objects' VOC boxes (1-based, inclusive), worked out by hand
    boxes: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)
    id: int = 0

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]


def _image(size: tuple[int, int], mode: str, fmt: str, color: Any) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format=fmt)
    return out.getvalue()


def _obj(cls: str, geometry: dict[str, Any]) -> dict[str, Any]:
    return {"class": cls, "tags": [], "geometry": geometry}


def _images() -> list[Img]:
    """The project, in export order: datasets as created, images as uploaded (by id)."""
    png = _image((64, 48), "RGB", "PNG", (10, 120, 30))
    return [
        Img(
            "ds1",
            "a.png",
            (64, 48),
            png,
            objects=[_obj("box", RECT)],
            boxes=[("box", (17, 13, 48, 36))],
        ),
        Img(
            "ds1",
            "b.jpg",
            (80, 60),
            _image((80, 60), "RGB", "JPEG", (200, 180, 40)),
            objects=[_obj("road", ROAD), _obj("blob", BLOB)],
            boxes=[("road", (6, 6, 61, 51)), ("blob", (53, 42, 64, 53))],
        ),
        Img(
            "ds1",
            "c.png",
            (32, 32),
            _image((32, 32), "L", "PNG", 90),
            tags=["val"],
            objects=[
                _obj("box", {"type": "rectangle", "left": 0, "top": 0, "right": 31, "bottom": 31})
            ],
            boxes=[("box", (1, 1, 32, 32))],
        ),
        Img("ds1", "d.png", (40, 30), _image((40, 30), "RGBA", "PNG", (1, 2, 3, 128)), ["train"]),
        Img(
            "ds1",
            "e.png",
            (40, 40),
            _image((40, 40), "RGB", "PNG", (0, 0, 255)),
            objects=[
                _obj("road", {"type": "polygon", "exterior": [[2.4, 3.6], [36.5, 3], [15, 35.2]]})
            ],
            boxes=[("road", (3, 4, 38, 36))],  # points rounded to the nearest pixel, halves up
        ),
        Img("ds1", "f.png", (16, 16), _image((16, 16), "RGB", "PNG", (9, 9, 9))),
        Img("val", "v1.png", (20, 20), _image((20, 20), "RGB", "PNG", (5, 5, 5)), ["train"]),
        Img("val", "v2.png", (20, 20), _image((20, 20), "RGB", "PNG", (6, 6, 6))),
        # the same name as ds1's a.png: without the dataset prefix it is renamed
        Img(
            "ds2",
            "a.png",
            (24, 24),
            _image((24, 24), "RGB", "PNG", (7, 7, 7)),
            objects=[
                _obj("box", {"type": "rectangle", "left": 3, "top": 4, "right": 18, "bottom": 19})
            ],
            boxes=[("box", (4, 5, 19, 20))],
        ),
    ]


@dataclass
class Stand:
    world: World
    api: ay.Api
    agent_id: int
    module_id: int
    project: Any
    datasets: dict[str, Any]
    images: list[Img]
    tmp: Path

    def export(self, target: dict[str, int] | None = None, **options: Any) -> int:
        """Run the app (on the whole project unless ``target``); returns the task id."""
        params = {**DEFAULTS, **options, **(target or {"projectId": self.project.id})}
        session = self.api.app.start(
            agent_id=self.agent_id,
            module_id=self.module_id,
            workspace_id=self.world.workspace_id,
            params=params,
            task_name="export",
        )
        return session.task_id

    def download(self, task_id: int) -> Path:
        """The task's tar from team files, downloaded."""
        path = self.api.task.get_info_by_id(task_id)["outputs"]["archive"]["path"]
        local = self.tmp / f"{task_id}.tar"
        if not local.exists():
            self.api.file.download(self.world.team_id, path, local)
        return local

    def members(self, task_id: int) -> dict[str, bytes | None]:
        """The task's tar: member name -> bytes (``None`` for a folder)."""
        out: dict[str, bytes | None] = {}
        with tarfile.open(self.download(task_id), "r:") as tar:  # a plain tar, not compressed
            for m in tar.getmembers():
                assert m.isdir() or m.isfile(), f"{m.name} is neither a file nor a folder"
                f = tar.extractfile(m) if m.isfile() else None
                out[m.name] = f.read() if f else None
        return out

    def archive(self, task_id: int) -> dict[str, bytes | None]:
        """The task's tar as ``members``, names under its ``VOCdevkit/VOC/``: the archive has
        one top folder, named as the archive, and ``VOCdevkit/VOC/`` in it, nothing else."""
        path = self.api.task.get_info_by_id(task_id)["outputs"]["archive"]["path"]
        top = Path(path).name.removesuffix(".tar")
        members = self.members(task_id)
        voc = f"{top}/{VOC_DIR}/"
        assert {n for n in members if not n.startswith(voc)} == {
            top,
            f"{top}/VOCdevkit",
            f"{top}/{VOC_DIR}",
        }
        assert members[top] is members[f"{top}/VOCdevkit"] is members[f"{top}/{VOC_DIR}"] is None
        return {n.removeprefix(voc): data for n, data in members.items() if n.startswith(voc)}

    def read_voc(self, task_id: int) -> VocFolder:
        """The task's tar unpacked and read as a VOC folder."""
        top, voc = VocFolder.from_archive(self.download(task_id), self.tmp / f"voc-{task_id}")
        path = self.api.task.get_info_by_id(task_id)["outputs"]["archive"]["path"]
        assert f"{top}.tar" == Path(path).name
        return voc


def _build_project(api: ay.Api, workspace_id: int, images: list[Img]) -> tuple[Any, dict[str, Any]]:
    project = api.project.create(workspace_id, "Roads & boxes")
    api.project.update_meta(
        project.id,
        {
            "classes": [
                {"name": "box", "shape": "rectangle", "color": COLORS["box"]},
                {"name": "road", "shape": "polygon", "color": COLORS["road"]},
                {"name": "blob", "shape": "bitmap", "color": COLORS["blob"]},
            ],
            "tags": [{"name": "train"}, {"name": "val"}],
        },
    )
    datasets: dict[str, Any] = {}
    for im in images:
        if im.dataset not in datasets:
            datasets[im.dataset] = api.dataset.create(project.id, im.dataset)
        im.id = api.image.upload_bytes(datasets[im.dataset].id, im.name, im.data).id
    api.annotation.upload_jsons(
        [im.id for im in images],
        [
            {
                "size": {"width": im.size[0], "height": im.size[1]},
                "tags": im.tags,
                "objects": im.objects,
            }
            for im in images
        ],
    )
    return api.project.get_info_by_id(project.id), datasets


@pytest.fixture(scope="module")
def stand(server: ServerProc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    """One team, agent, published app and project for the module's exports."""
    tmp = tmp_path_factory.mktemp("pascal")
    admin = Client(server.url, server.admin_token)
    team = admin.ok("POST", "/teams", json={"name": f"pascal-{tmp.name}"})
    ws = admin.ok("POST", f"/teams/{team['id']}/workspaces", json={"name": "main"})
    world = World(server, admin, team["id"], ws["id"], tmp)
    api = ay.Api(server.url, server.admin_token)
    try:
        module_id = admin.publish(APP)["module_id"]
        agent_id, _, _ = online_agent(world)
        images = _images()
        project, datasets = _build_project(api, world.workspace_id, images)
        yield Stand(world, api, agent_id, module_id, project, datasets, images, tmp)
    finally:
        page = admin.ok("GET", "/tasks", params={"team_id": world.team_id, "limit": 500})
        for t in page["items"]:
            if t["status"] not in ("finished", "error", "stopped"):
                admin.http.post(f"/tasks/{t['id']}/stop")
        for agent in world.agents:
            agent.stop()
        api.close()


# -- expectations, worked out independently of the app ---------------------------------------


def _names(images: list[Img], prefix: bool) -> list[str]:
    names = [f"{im.dataset}_{im.stem}" if prefix else im.stem for im in images]
    if not prefix:
        assert names[-1] == "a"  # ds2/a.png meets ds1/a.png
        names[-1] = "a_1"
    return names


def _splits(images: list[Img], coef: float) -> list[str]:
    pre: list[str | None] = []
    for im in images:
        if im.dataset in ("train", "val"):
            pre.append(im.dataset)
        else:
            pre.append(next((s for s in ("train", "val") if s in im.tags), None))
    free = [i for i, p in enumerate(pre) if p is None]
    n_train = int(len(free) * coef)
    return [p or ("train" if free.index(i) < n_train else "val") for i, p in enumerate(pre)]


def _layout(names: list[str]) -> set[str]:
    folders = {
        "Annotations",
        "ImageSets",
        "ImageSets/Main",
        "ImageSets/Segmentation",
        "JPEGImages",
        "SegmentationClass",
        "SegmentationObject",
    }
    files = {"colors.txt", "labelmap.txt"}
    files |= {f"ImageSets/{task}/{s}.txt" for task in ("Main", "Segmentation") for s in SPLITS}
    files |= {f"ImageSets/Main/{c}_{s}.txt" for c in COLORS for s in SPLITS}
    for n in names:
        files |= {
            f"JPEGImages/{n}.jpg",
            f"Annotations/{n}.xml",
            f"SegmentationClass/{n}.png",
            f"SegmentationObject/{n}.png",
        }
    return folders | files


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _mask(data: bytes | None, size: tuple[int, int]) -> Image.Image:
    assert data is not None
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG" and img.mode == "P" and img.size == size
    return img


def _palette(img: Image.Image) -> list[tuple[int, int, int]]:
    flat = img.getpalette() or []
    return [tuple(flat[i : i + 3]) for i in range(0, len(flat), 3)]  # type: ignore[misc]


def _expected_row(length: int, lo: int, hi: int, t: int, inside: int) -> list[int]:
    """A line across a rectangle spanning ``lo..hi``: its contour ``2t+1`` px wide on each edge."""
    row = []
    for x in range(length):
        if t > 0 and (abs(x - lo) <= t or abs(x - hi) <= t):
            row.append(255)
        else:
            row.append(inside if lo <= x <= hi else 0)
    return row


def _check_export(stand: Stand, task_id: int, t: int, coef: float, prefix: bool) -> None:
    images = stand.images
    names = _names(images, prefix)
    files = stand.archive(task_id)
    assert set(files) == _layout(names)

    # the split: pre-assigned images keep theirs, the rest in order by trainSplitCoef
    splits = _splits(images, coef)
    for key in ("train", "val"):
        want = "".join(f"{n}\n" for n, s in zip(names, splits, strict=True) if s == key)
        assert files[f"ImageSets/Segmentation/{key}.txt"] == want.encode(), key
    assert files["ImageSets/Segmentation/trainval.txt"] == "".join(f"{n}\n" for n in names).encode()
    # detection's lists are the same, and each class has its classification lists
    for key in SPLITS:
        assert files[f"ImageSets/Main/{key}.txt"] == files[f"ImageSets/Segmentation/{key}.txt"]
        for class_name in COLORS:
            want = "".join(
                f"{n} {1 if any(c == class_name for c, _ in im.boxes) else -1}\n"
                for im, n, s in zip(images, names, splits, strict=True)
                if key in (s, "trainval")
            )
            list_file = f"ImageSets/Main/{class_name}_{key}.txt"
            assert files[list_file] == want.encode(), list_file

    assert (
        files["colors.txt"]
        == (
            "0 0 0 background\n"
            + "".join(f"{' '.join(map(str, _rgb(c)))} {name}\n" for name, c in COLORS.items())
            + "224 224 192 neutral\n"
        ).encode()
    )
    assert (
        files["labelmap.txt"]
        == (
            "# label:color_rgb:parts:actions\n"
            "background:0,0,0::\n"
            "neutral:224,224,192::\n"
            + "".join(f"{name}:{','.join(map(str, _rgb(c)))}::\n" for name, c in COLORS.items())
        ).encode()
    )

    # read as a VOC reader reads it, object by object against the project's annotations
    anns = stand.api.annotation.download_jsons([im.id for im in images])
    check_against_project(
        stand.read_voc(task_id), dict(zip(names, anns, strict=True)), list(COLORS), contour=t > 0
    )

    for im, name in zip(images, names, strict=True):
        # the image: an RGB JPEG of the image's size; a JPEG upload is kept as it was
        jpeg = files[f"JPEGImages/{name}.jpg"]
        assert jpeg is not None
        with Image.open(io.BytesIO(jpeg)) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", im.size)
        if im.name.endswith(".jpg"):
            assert jpeg == im.data

        # the XML
        root = ET.fromstring(files[f"Annotations/{name}.xml"] or b"")
        assert root.tag == "annotation"
        assert root.findtext("filename") == f"{name}.jpg"
        assert root.findtext("folder") == f"VOC_{stand.project.name}"
        assert root.findtext("size/width") == str(im.size[0])
        assert root.findtext("size/height") == str(im.size[1])
        assert root.findtext("size/depth") == "3"
        assert root.findtext("segmented") == "1"
        objects = []
        for obj in root.findall("object"):
            assert obj.findtext("pose") == "Unspecified"
            assert obj.findtext("truncated") == "0" and obj.findtext("difficult") == "0"
            box = tuple(
                int(obj.findtext(f"bndbox/{k}") or "") for k in ("xmin", "ymin", "xmax", "ymax")
            )
            objects.append((obj.findtext("name"), box))
        assert objects == im.boxes, name

        # the masks: indexed, the image's size; palettes as documented
        cls = _mask(files[f"SegmentationClass/{name}.png"], im.size)
        inst = _mask(files[f"SegmentationObject/{name}.png"], im.size)
        palette = _palette(cls)
        assert palette[0] == (0, 0, 0) and palette[255] == NEUTRAL
        for cname, color in COLORS.items():
            assert palette[CLASS_INDEX[cname]] == _rgb(color)
        assert _palette(inst)[255] == NEUTRAL
        class_values = set(cls.tobytes())
        object_values = set(inst.tobytes())
        used = {CLASS_INDEX[c] for c, _ in im.boxes}
        if not im.objects:
            assert class_values == object_values == {0}
            continue
        if t == 0:
            assert 255 not in class_values and 255 not in object_values
        assert class_values - {0, 255} == used
        assert object_values - {0, 255} == set(range(1, len(im.objects) + 1))

        w, h = im.size
        if im.stem == "a" and im.dataset == "ds1":
            # across the rectangle's straight edges, the contour is exactly 2t+1 px wide
            for mask in (cls, inst):  # the box is class 1 and instance 1
                row = [mask.getpixel((x, 24)) for x in range(w)]
                col = [mask.getpixel((32, y)) for y in range(h)]
                assert row == _expected_row(w, LEFT, RIGHT, t, 1), (t, row)
                assert col == _expected_row(h, TOP, BOTTOM, t, 1), (t, col)
        elif im.name == "b.jpg":
            # polygon: inside, its hole; the bitmap drawn on top of it
            assert cls.getpixel((12, 27)) == CLASS_INDEX["road"]
            assert inst.getpixel((12, 27)) == 1
            assert cls.getpixel((30, 27)) == 0 and inst.getpixel((30, 27)) == 0  # the hole
            assert cls.getpixel((57, 46)) == CLASS_INDEX["blob"]
            assert inst.getpixel((57, 46)) == 2
            if t == 0:
                bitmap = {(x, y) for y in range(h) for x in range(w) if inst.getpixel((x, y)) == 2}
                assert bitmap == {(50 + x, 40 + y) for x, y in BLOB_PIXELS}
            else:  # the hole's edge is an edge too
                assert cls.getpixel((20, 27)) == 255
        elif im.name == "c.png":
            # a box over the whole image: the image's border is no edge, so no contour at all
            assert class_values == {CLASS_INDEX["box"]} and object_values == {1}


def _finished(stand: Stand, task_id: int) -> dict[str, Any]:
    assert stand.api.app.wait(task_id, target_status=S.FINISHED) == S.FINISHED
    return stand.api.task.get_info_by_id(task_id)


# -- the tests -------------------------------------------------------------------------------


def test_export_with_the_defaults(stand: Stand) -> None:
    tid = stand.export()
    task = _finished(stand, tid)
    n = len(stand.images)
    assert task["exit_code"] == 0
    assert task["progress"]["current"] == n and task["progress"]["total"] == n
    tar_path = (
        f"/tmp/export-to-pascal-voc/export/{tid}/"
        f"{stand.project.id}_{stand.project.name}_pascal_voc.tar"
    )
    assert task["outputs"] == {"archive": {"type": "team_file", "path": tar_path}}
    assert stand.api.file.exists(stand.world.team_id, tar_path)
    _check_export(stand, tid, t=3, coef=0.8, prefix=True)
    logs = [line.text for line in stand.api.task.follow_logs(tid)]
    assert logs[-1].startswith(f"exported {n} images (6 objects; train ")


@pytest.mark.parametrize(
    ("t", "prefix", "coef"), [(0, False, 0.5), (1, True, 0.0), (2, False, 1.0)]
)
def test_contours_names_and_split(stand: Stand, t: int, prefix: bool, coef: float) -> None:
    tid = stand.export(pascalContourThickness=t, addPrefixToImages=prefix, trainSplitCoef=coef)
    _finished(stand, tid)
    _check_export(stand, tid, t=t, coef=coef, prefix=prefix)
    if not prefix:
        logs = "\n".join(line.text for line in stand.api.task.follow_logs(tid))
        assert "ds2/a.png is written as 'a_1': 'a' is taken" in logs


def test_export_of_one_dataset(stand: Stand) -> None:
    ds = stand.datasets["val"]
    tid = stand.export({"datasetId": ds.id})
    task = _finished(stand, tid)
    assert task["progress"]["current"] == 2
    files = stand.archive(tid)
    assert set(files) == _layout(["val_v1", "val_v2"])
    # a dataset named "val" puts all its images in val, whatever their tags
    assert files["ImageSets/Segmentation/val.txt"] == b"val_v1\nval_v2\n"
    assert files["ImageSets/Segmentation/train.txt"] == b""
    images = [im for im in stand.images if im.dataset == "val"]
    anns = stand.api.annotation.download_jsons([im.id for im in images])
    check_against_project(
        stand.read_voc(tid), {"val_v1": anns[0], "val_v2": anns[1]}, list(COLORS), contour=True
    )


def test_long_names_of_wide_characters_fit_in_file_names(stand: Stand) -> None:
    """100 characters of 3 bytes each are 300 bytes: more than a file name may have (255)."""
    api, long = stand.api, "画像" * 50
    project = api.project.create(stand.world.workspace_id, long)
    api.project.update_meta(project.id, {"classes": [{"name": "box", "shape": "rectangle"}]})
    dataset = api.dataset.create(project.id, "データ" * 33)
    buf = io.BytesIO()
    Image.new("RGB", (8, 6)).save(buf, format="PNG")
    for n in range(2):  # two names alike in their first 200 bytes: still two files
        api.image.upload_bytes(dataset.id, f"{long}{n}.png"[-100:], buf.getvalue())
    tid = stand.export({"projectId": project.id})
    task = _finished(stand, tid)
    path = task["outputs"]["archive"]["path"]
    assert all(len(part.encode()) <= 255 for part in path.split("/"))
    files = stand.archive(tid)
    jpegs = [n for n in files if n.startswith("JPEGImages/")]
    assert len(jpegs) == 2
    # the top folder's name too: every part of every name in the archive
    assert all(len(part.encode()) <= 255 for n in stand.members(tid) for part in n.split("/"))


def test_classes_of_one_colour_are_read_apart_by_colour(stand: Stand) -> None:
    """14 classes without a colour take the palette's 12 in turn, and one is black like the
    background: each class still gets a colour of its own in the masks, ``colors.txt`` and
    ``labelmap.txt`` (the nearest free one), so a reader that names mask colours through
    ``labelmap.txt`` reads every object's class; the log says which classes moved."""
    api = stand.api
    project = api.project.create(stand.world.workspace_id, "many classes")
    classes = [f"c{i}" for i in range(14)] + ["dark"]
    meta = [{"name": c, "shape": "rectangle"} for c in classes[:-1]]
    meta.append({"name": "dark", "shape": "rectangle", "color": "#000000"})
    api.project.update_meta(project.id, {"classes": meta})
    ds = api.dataset.create(project.id, "ds")
    image = api.image.upload_bytes(ds.id, "x.png", _image((60, 20), "RGB", "PNG", (1, 1, 1))).id
    objects = [
        _obj(c, {"type": "rectangle", "left": 12 * k, "top": 2, "right": 12 * k + 9, "bottom": 17})
        for k, c in enumerate(("c0", "c12", "dark", "c1", "c13"))
    ]
    api.annotation.upload_jsons(
        [image], [{"size": {"width": 60, "height": 20}, "objects": objects}]
    )
    tid = stand.export({"projectId": project.id}, pascalContourThickness=0)
    _finished(stand, tid)

    voc = stand.read_voc(tid)
    labelmap = voc.labelmap()
    assert len(set(labelmap.values())) == len(labelmap) == 2 + len(classes)
    c0, c1 = _rgb(PALETTE[0]), _rgb(PALETTE[1])
    assert (labelmap["c0"], labelmap["c1"]) == (c0, c1)
    # the nearest free colour: blue one up
    assert labelmap["c12"] == (c0[0], c0[1], c0[2] + 1)
    assert labelmap["c13"] == (c1[0], c1[1], c1[2] + 1)
    assert labelmap["dark"] == (0, 0, 1)
    colors = (voc.root / "colors.txt").read_text().splitlines()
    assert colors[1:-1] == [f"{r} {g} {b} {name}" for name, (r, g, b) in labelmap.items()][2:]
    (ann,) = api.annotation.download_jsons([image])
    check_against_project(voc, {"ds_x": ann}, classes, contour=False)
    logs = [line.text for line in api.task.follow_logs(tid)]
    for name in ("c12", "c13", "dark"):
        assert any(line.startswith(f"warning: class {name!r} is drawn in ") for line in logs)
    assert not any(line.startswith("warning: class 'c1' ") for line in logs), logs


def test_a_start_on_a_missing_project_is_refused(stand: Stand) -> None:
    """The server refuses the start itself (a 422 on the target): nothing is queued."""
    before = len(stand.api.task.get_list(stand.world.team_id))
    with pytest.raises(BadRequestError) as refused:
        stand.export({"projectId": 987654})
    assert refused.value.status_code == 422
    assert refused.value.field == "params.state.projectId"
    assert f"there is no images project 987654 in team {stand.world.team_id}" in str(refused.value)
    assert len(stand.api.task.get_list(stand.world.team_id)) == before


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"trainSplitCoef": 1.5}, "error: trainSplitCoef must be a number from 0 to 1; got 1.5"),
        (
            {"pascalContourThickness": 1.5},
            "error: pascalContourThickness must be a whole number 0..100; got 1.5",
        ),
    ],
)
def test_bad_input_fails_with_a_clear_message(
    stand: Stand, state: dict[str, Any], message: str
) -> None:
    options = dict(state)  # the parameter is shared by the runs on each database
    target = {"projectId": options.pop("projectId", stand.project.id)}
    tid = stand.export(target, **options)
    try:
        status = stand.api.app.wait(tid, target_status=S.FINISHED)
    except TaskFinishedWithError as exc:
        error = str(exc)
    else:
        logs = [line.text for line in stand.api.task.follow_logs(tid)]
        pytest.fail(f"the task ended {status}: {stand.api.task.get_info_by_id(tid)}\n{logs}")
    task = stand.api.task.get_info_by_id(tid)
    assert task["status"] == "error" and task["exit_code"] == 2
    assert message in error
    assert task["outputs"] == {}


def test_a_stop_ends_the_export_at_once(stand: Stand) -> None:
    """SIGTERM in the middle: exit 0 at once with a "stopped" line, nothing uploaded."""
    api = stand.api
    project = api.project.create(stand.world.workspace_id, "big")
    api.project.update_meta(project.id, {"classes": [{"name": "box", "shape": "rectangle"}]})
    ds = api.dataset.create(project.id, "ds")
    # big images, slow enough to export that the stop lands in the middle
    data = _image((2000, 1500), "RGB", "PNG", (50, 60, 70))
    ids = [api.image.upload_bytes(ds.id, f"{i:03}.png", data).id for i in range(30)]
    box = {"type": "rectangle", "left": 1, "top": 1, "right": 1998, "bottom": 1498}
    api.annotation.upload_jsons(
        ids,
        [{"size": {"width": 2000, "height": 1500}, "objects": [_obj("box", box)]}] * len(ids),
    )
    tid = stand.export({"projectId": project.id}, pascalContourThickness=10)
    wait_for(
        lambda: (api.task.get_info_by_id(tid)["progress"] or {}).get("current", 0) >= 1,
        60,
        "the export to get going",
    )
    assert api.app.stop(tid) == S.TERMINATING
    assert api.task.wait(tid) == S.STOPPED
    task = api.task.get_info_by_id(tid)
    assert task["progress"]["current"] < len(ids), "the export finished before the stop"
    assert task["exit_code"] == 0
    logs = [line.text for line in api.task.follow_logs(tid)]
    assert "stopped: the export was asked to stop" in logs
    assert task["outputs"] == {}
    assert not api.file.dir_exists(stand.world.team_id, f"/tmp/export-to-pascal-voc/export/{tid}")
    # exit code 0 and its own "stopped" line: it left on SIGTERM, not killed after the grace

"""Create demo project: synthetic pictures of shapes, annotated exactly.

Every picture is drawn from the annotation itself: each object's mask (``object_mask``) is
filled with its class's colour, on a background gradient, one object per cell of a 3x2 grid so
that no two objects overlap. So the annotation is the truth, pixel for pixel: a rectangle's
pixels, a triangle's, a ring's (its hole shows the background) and a blob's (a bitmap made from
the drawn pixels) are all of the class colour. Pictures are PNG (lossless).

The same ``seed`` gives the same project. Datasets ``city`` and ``forest`` have their first
picture tagged ``train`` and their second ``val``, the rest untagged; a third dataset is named
``val``, so both ways the Pascal VOC export picks a split show.
"""

from __future__ import annotations

import random
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageColor, ImageDraw

import appyard as ay
from appyard.schemas.annotation import Annotation, ProjectMeta, encode_bitmap
from appyard.sdk.geometry import object_mask

META = ProjectMeta.model_validate(
    {
        "classes": [
            {"name": "box", "shape": "rectangle", "color": "#E53935"},
            {"name": "triangle", "shape": "polygon", "color": "#1E88E5"},
            {"name": "ring", "shape": "polygon", "color": "#FDD835"},
            {"name": "blob", "shape": "bitmap", "color": "#8E24AA"},
        ],
        "tags": [
            {"name": "train", "color": "#43A047"},
            {"name": "val", "color": "#FB8C00"},
            {"name": "large", "color": "#546E7A"},
        ],
    }
)
#: dataset name -> (top colour, bottom colour) ranges of its background gradient
DATASETS = {
    "city": ((95, 105, 115), (150, 150, 155)),
    "forest": ((30, 70, 40), (70, 110, 60)),
    "val": ((120, 90, 70), (180, 160, 120)),
}
SIZES = [(320, 240), (256, 192), (300, 210)]
COLS, ROWS = 3, 2
MARGIN = 4
#: an object covering at least this share of its cell gets the ``large`` tag
LARGE_SHARE = 0.35


class BadOption(Exception):
    """An option of the app that cannot be used; the message says which and why."""


CLASS_RGB = {c.name: ImageColor.getrgb(c.color or "#FFFFFF")[:3] for c in META.classes}


def options(state: dict[str, Any]) -> tuple[str, int, int]:
    name = state.get("projectName", "Demo shapes")
    if not isinstance(name, str) or not name.strip():
        raise BadOption("projectName must be a non-empty text")
    count = state.get("imagesPerDataset", 6)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
        raise BadOption(f"imagesPerDataset must be a whole number from 1 to 1000, not {count!r}")
    seed = state.get("seed", 7)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BadOption(f"seed must be a whole number, not {seed!r}")
    return name.strip(), count, seed


# -- shapes, each inside its cell (x0, y0, x1, y1 inclusive) ------------------------------------


def rectangle(rng: random.Random, x0: int, y0: int, x1: int, y1: int) -> dict[str, Any]:
    w, h = x1 - x0, y1 - y0
    left = x0 + rng.randint(0, w // 3)
    top = y0 + rng.randint(0, h // 3)
    right = x1 - rng.randint(0, w // 3)
    bottom = y1 - rng.randint(0, h // 3)
    return {"type": "rectangle", "left": left, "top": top, "right": right, "bottom": bottom}


def triangle(rng: random.Random, x0: int, y0: int, x1: int, y1: int) -> dict[str, Any]:
    while True:
        pts = [[rng.randint(x0, x1), rng.randint(y0, y1)] for _ in range(3)]
        (ax, ay_), (bx, by), (cx, cy) = pts
        area = abs((bx - ax) * (cy - ay_) - (cx - ax) * (by - ay_)) / 2
        if area >= (x1 - x0) * (y1 - y0) / 6:
            return {"type": "polygon", "exterior": pts, "interiors": []}


def octagon(cx: int, cy: int, r: int) -> list[list[int]]:
    k = round(r * 0.41)  # the corner cut of a regular octagon
    return [
        [cx - k, cy - r],
        [cx + k, cy - r],
        [cx + r, cy - k],
        [cx + r, cy + k],
        [cx + k, cy + r],
        [cx - k, cy + r],
        [cx - r, cy + k],
        [cx - r, cy - k],
    ]


def ring(rng: random.Random, x0: int, y0: int, x1: int, y1: int) -> dict[str, Any]:
    r_max = min(x1 - x0, y1 - y0) // 2
    r = rng.randint(max(8, r_max * 2 // 3), r_max)
    cx = rng.randint(x0 + r, x1 - r)
    cy = rng.randint(y0 + r, y1 - r)
    hole = rng.randint(r // 3, r // 2)
    return {"type": "polygon", "exterior": octagon(cx, cy, r), "interiors": [octagon(cx, cy, hole)]}


def blob(rng: random.Random, x0: int, y0: int, x1: int, y1: int) -> dict[str, Any]:
    """A few overlapping ellipses, drawn, then made a bitmap of exactly the drawn pixels."""
    w, h = x1 - x0 + 1, y1 - y0 + 1
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(rng.randint(2, 4)):
        ew, eh = rng.randint(w // 3, w * 2 // 3), rng.randint(h // 3, h * 2 // 3)
        # each ellipse covers the cell's centre, so the blob is in one piece
        ex = rng.randint(max(0, w // 2 - ew + ew // 4), min(w - ew - 1, w // 2 - ew // 4))
        ey = rng.randint(max(0, h // 2 - eh + eh // 4), min(h - eh - 1, h // 2 - eh // 4))
        draw.ellipse((ex, ey, ex + ew, ey + eh), fill=255)
    box = mask.getbbox()  # right/bottom exclusive; never None: an ellipse has pixels
    assert box is not None
    left, top = box[:2]
    crop = mask.crop(box)
    data = encode_bitmap(crop.width, crop.height, crop.tobytes())
    return {"type": "bitmap", "origin": [x0 + left, y0 + top], "data": data}


SHAPES = {"box": rectangle, "triangle": triangle, "ring": ring, "blob": blob}


def background(rng: random.Random, dataset: str, size: tuple[int, int]) -> Image.Image:
    top_rgb, bottom_rgb = DATASETS[dataset]
    top = [c + rng.randint(-15, 15) for c in top_rgb]
    bottom = [c + rng.randint(-15, 15) for c in bottom_rgb]
    width, height = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(height):
        t = y / max(1, height - 1)
        color = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line((0, y, width - 1, y), fill=color)
    return img


def picture(rng: random.Random, dataset: str, index: int) -> tuple[Image.Image, dict[str, Any]]:
    """One picture and its annotation; the annotation's masks are what is painted."""
    width, height = rng.choice(SIZES)
    img = background(rng, dataset, (width, height))
    cw, ch = width // COLS, height // ROWS
    cells = rng.sample(range(COLS * ROWS), rng.randint(2, COLS * ROWS - 1))
    objects = []
    for cell in cells:
        col, row = cell % COLS, cell // COLS
        box = (
            col * cw + MARGIN,
            row * ch + MARGIN,
            (col + 1) * cw - 1 - MARGIN,
            (row + 1) * ch - 1 - MARGIN,
        )
        name = rng.choice(list(SHAPES))
        geometry = SHAPES[name](rng, *box)
        obj = {"class": name, "tags": [], "geometry": geometry}
        mask = object_mask(obj, width, height)
        if mask.histogram()[255] >= LARGE_SHARE * cw * ch:
            obj["tags"] = ["large"]
        img.paste(CLASS_RGB[name], mask=mask)
        objects.append(obj)
    tags = []
    if dataset != "val" and index == 0:
        tags = ["train"]
    elif dataset != "val" and index == 1:
        tags = ["val"]
    ann = {"size": {"width": width, "height": height}, "tags": tags, "objects": objects}
    return img, Annotation.model_validate(ann).to_json()


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit("asked to stop")


def main() -> int:
    session = ay.AppSession.from_env()
    api = session.api
    try:
        name, count, seed = options(session.state)
    except BadOption as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    workspace_id = ay.env.workspace_id()
    signal.signal(signal.SIGTERM, _stop)
    project = api.project.create(
        workspace_id,
        name,
        description=f"Synthetic shapes made by create-demo-project (seed {seed}).",
        change_name_if_conflict=True,
    )
    print(f"project {project.name!r} (id {project.id}) in workspace {workspace_id}")
    with api.project.removed_on_failure(project.id):
        api.project.update_meta(project.id, META)
        rng = random.Random(seed)
        total = count * len(DATASETS)
        objects = 0
        with (
            tempfile.TemporaryDirectory(prefix="demo-") as tmp,
            session.progress_bar(total=total, message="drawing and uploading images") as bar,
        ):
            for ds_name in DATASETS:
                dataset = api.dataset.create(project.id, ds_name)
                names, paths, anns = [], [], []
                for i in range(count):
                    img, ann = picture(rng, ds_name, i)
                    names.append(f"{ds_name}_{i + 1:03d}.png")
                    paths.append(Path(tmp) / names[-1])
                    img.save(paths[-1], format="PNG")
                    anns.append(ann)
                    objects += len(ann["objects"])
                infos = api.image.upload_paths(dataset.id, names, paths, progress_cb=bar.update)
                api.annotation.upload_jsons([info.id for info in infos], anns)
                for path in paths:
                    path.unlink()
                print(f"dataset {ds_name!r} (id {dataset.id}): {len(infos)} images")
    session.set_outputs({"project_id": project.id})
    print(
        f"done: project {project.name!r} (id {project.id}), {len(DATASETS)} datasets, "
        f"{total} images, {objects} objects"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

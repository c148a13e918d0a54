"""A Pascal VOC reader for the tests, written to the conventions of the VOC devkit and of the
dataset tools that name mask colours through ``labelmap.txt``, not to our exporter: it sees an
exported archive as a detection or segmentation training script would, and compares what it
reads with a project's annotations object by object.

- the archive has one top folder; the VOC folder is found as scripts find it, ``*/VOCdevkit/VOC*``;
- detection: ``ImageSets/Main/<split>.txt`` names the images, ``Annotations/<id>.xml`` their
  objects (``bndbox`` 1-based and inclusive), ``ImageSets/Main/<class>_<split>.txt`` the
  classification lists (``<id> 1``, ``0`` difficult only, ``-1`` absent);
- segmentation: ``ImageSets/Segmentation/<split>.txt`` names the images; a class mask's colours
  are named by ``labelmap.txt`` (``name:r,g,b:parts:actions``); an object mask's colour ``i`` is
  instance ``i`` in the devkit's colormap; ``(224, 224, 192)`` (index 255) is void.
"""

from __future__ import annotations

import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from appyard.sdk.geometry import bounding_box, object_mask

RGB = tuple[int, int, int]
BLACK: RGB = (0, 0, 0)
#: the devkit's colour of index 255: object boundaries and pixels not to learn from
VOID: RGB = (224, 224, 192)
VOID_INDEX = 255
SPLITS = ("train", "val", "trainval")


def devkit_colormap() -> list[RGB]:
    """The devkit's ``VOClabelcolormap(256)``: index ``i``'s colour from its bits, three at a
    time, the first three the highest bits of red, green and blue."""
    colors: list[RGB] = []
    for i in range(256):
        r = g = b = 0
        bits = i
        for shift in range(7, -1, -1):
            r |= (bits & 1) << shift
            g |= ((bits >> 1) & 1) << shift
            b |= ((bits >> 2) & 1) << shift
            bits >>= 3
        colors.append((r, g, b))
    return colors


@dataclass
class VocObject:
    name: str
    box: tuple[int, ...]  # xmin, ymin, xmax, ymax: 1-based, inclusive
    difficult: bool


@dataclass
class VocImage:
    id: str
    jpeg: Path
    size: tuple[int, int]
    objects: list[VocObject]


@dataclass
class VocMasks:
    id: str
    size: tuple[int, int]
    #: per pixel, row by row: the labelmap's name of its colour in ``SegmentationClass``
    classes: list[str]
    #: per pixel, row by row: its instance in ``SegmentationObject`` (0 none, 255 void)
    instances: list[int]


def _pixels(path: Path) -> tuple[tuple[int, int], list[RGB]]:
    """The image's size and its pixels' colours, as a tool that reads colours sees them."""
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    data = rgb.tobytes()
    return rgb.size, list(zip(data[0::3], data[1::3], data[2::3], strict=True))


def _lines(path: Path) -> list[str]:
    return [s for line in path.read_text(encoding="utf-8").splitlines() if (s := line.strip())]


class VocFolder:
    """One ``VOCdevkit/VOC*`` folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_archive(cls, archive: Path, dest: Path) -> tuple[str, VocFolder]:
        """Unpack the plain tar ``archive`` into ``dest``: its one top folder and the VOC
        folder found under it."""
        with tarfile.open(archive, "r:") as tar:
            members = tar.getmembers()
            for m in members:
                parts = m.name.split("/")
                assert m.isdir() or m.isfile(), f"{m.name}: neither a file nor a folder"
                assert not m.name.startswith("/") and ".." not in parts, m.name
            tops = {m.name.split("/")[0] for m in members}
            assert len(tops) == 1, f"more than one top folder: {sorted(tops)}"
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # pragma: no cover - Python before 3.11.4; names were checked above
                tar.extractall(dest)
        found = sorted(dest.glob("*/VOCdevkit/VOC*"))
        assert len(found) == 1, f"VOC folders: {found}"
        return tops.pop(), cls(found[0])

    def ids(self, task: str, split: str) -> list[str]:
        """``ImageSets/<task>/<split>.txt``: one image id a line."""
        return _lines(self.root / "ImageSets" / task / f"{split}.txt")

    def labelmap(self) -> dict[str, RGB]:
        """``labelmap.txt``: name -> colour, in order; ``#`` lines are comments."""
        out: dict[str, RGB] = {}
        for line in _lines(self.root / "labelmap.txt"):
            if line.startswith("#"):
                continue
            fields = line.split(":")
            assert len(fields) == 4, f"labelmap.txt: {line!r} has not 4 ':'-separated fields"
            name, color = fields[0], fields[1].split(",")
            assert name not in out, f"labelmap.txt: {name!r} twice"
            assert len(color) == 3, f"labelmap.txt: {line!r} has no r,g,b colour"
            out[name] = (int(color[0]), int(color[1]), int(color[2]))
        return out

    def classes(self) -> list[str]:
        """The object classes: the labelmap's names but the background's and void's."""
        return [name for name, rgb in self.labelmap().items() if rgb not in (BLACK, VOID)]

    def detection(self, split: str) -> list[VocImage]:
        """The split's images (``ImageSets/Main``) with their XML's size and objects."""
        out: list[VocImage] = []
        for image_id in self.ids("Main", split):
            root = ET.parse(self.root / "Annotations" / f"{image_id}.xml").getroot()
            assert root.tag == "annotation", image_id
            size = (int(root.findtext("size/width") or ""), int(root.findtext("size/height") or ""))
            objects = [
                VocObject(
                    obj.findtext("name") or "",
                    tuple(
                        int(float(obj.findtext(f"bndbox/{k}") or ""))
                        for k in ("xmin", "ymin", "xmax", "ymax")
                    ),
                    obj.findtext("difficult") == "1",
                )
                for obj in root.iter("object")
            ]
            jpeg = self.root / "JPEGImages" / (root.findtext("filename") or f"{image_id}.jpg")
            out.append(VocImage(image_id, jpeg, size, objects))
        return out

    def classification(self, split: str) -> dict[str, list[tuple[str, int]]]:
        """Per class, ``ImageSets/Main/<class>_<split>.txt``: ``(image id, flag)`` in order."""
        out: dict[str, list[tuple[str, int]]] = {}
        for cls in self.classes():
            rows = []
            for line in _lines(self.root / "ImageSets" / "Main" / f"{cls}_{split}.txt"):
                image_id, flag = line.rsplit(maxsplit=1)
                rows.append((image_id.strip(), int(flag)))
            out[cls] = rows
        return out

    def segmentation(self, split: str) -> list[VocMasks]:
        """The split's images (``ImageSets/Segmentation``) with their masks read by colour."""
        labelmap = self.labelmap()
        named = {rgb: name for name, rgb in labelmap.items()}
        assert len(named) == len(labelmap), f"labelmap.txt: two names share a colour: {labelmap}"
        instance = {rgb: i for i, rgb in enumerate(devkit_colormap())}
        out: list[VocMasks] = []
        for image_id in self.ids("Segmentation", split):
            size, class_px = _pixels(self.root / "SegmentationClass" / f"{image_id}.png")
            object_size, object_px = _pixels(self.root / "SegmentationObject" / f"{image_id}.png")
            assert object_size == size, image_id
            unknown = set(class_px) - set(named)
            assert not unknown, f"{image_id}: class mask colours not in labelmap.txt: {unknown}"
            unknown = set(object_px) - set(instance)
            assert not unknown, f"{image_id}: object mask colours not in the colormap: {unknown}"
            out.append(
                VocMasks(
                    image_id,
                    size,
                    [named[c] for c in class_px],
                    [instance[c] for c in object_px],
                )
            )
        return out


def check_against_project(
    voc: VocFolder,
    annotations: Mapping[str, dict[str, Any]],
    classes: Sequence[str],
    contour: bool,
) -> None:
    """What ``voc`` holds, read as above, is the project's: ``annotations`` maps each exported
    image id to its annotation (JSON), ``classes`` are the meta's, in order; ``contour`` says
    whether contours were drawn (void pixels may then stand where an object's own would be).

    Detection: each image's XML boxes are its objects' boxes (1-based), class by class, in order;
    its class lists say 1 exactly for the classes it has. Segmentation: each object's pixels
    (those it shows, over earlier objects) are its instance in the object mask and its class in
    the class mask, pixel for pixel (or void, with contours); no other pixel is.
    """
    labelmap = voc.labelmap()
    assert next(iter(labelmap.items())) == ("background", BLACK), labelmap
    assert list(labelmap.values()).count(VOID) == 1, labelmap
    void_name = next(name for name, rgb in labelmap.items() if rgb == VOID)
    assert voc.classes() == list(classes)

    splits = {split: voc.ids("Main", split) for split in SPLITS}
    for split in SPLITS:
        assert voc.ids("Segmentation", split) == splits[split], split
        assert len(set(splits[split])) == len(splits[split]), f"{split}: an image twice"
    assert not set(splits["train"]) & set(splits["val"])
    assert Counter(splits["train"] + splits["val"]) == Counter(splits["trainval"])
    assert sorted(splits["trainval"]) == sorted(annotations)

    for split in SPLITS:
        for image in voc.detection(split):
            ann = annotations[image.id]
            assert image.size == (ann["size"]["width"], ann["size"]["height"]), image.id
            with Image.open(image.jpeg) as jpeg:
                assert (jpeg.format, jpeg.size) == ("JPEG", image.size), image.id
            boxes = [(o["class"], tuple(v + 1 for v in bounding_box(o))) for o in ann["objects"]]
            assert [(o.name, o.box) for o in image.objects] == boxes, image.id
            assert not any(o.difficult for o in image.objects), image.id
        for cls, rows in voc.classification(split).items():
            assert [image_id for image_id, _ in rows] == splits[split], (cls, split)
            for image_id, flag in rows:
                has = any(o["class"] == cls for o in annotations[image_id]["objects"])
                assert flag == (1 if has else -1), (cls, split, image_id)

    for masks in voc.segmentation("trainval"):
        ann = annotations[masks.id]
        objects = ann["objects"]
        width, height = masks.size
        assert masks.size == (ann["size"]["width"], ann["size"]["height"]), masks.id
        shown = Image.new("L", masks.size, 0)  # which object each pixel shows: the last drawn
        for n, obj in enumerate(objects, start=1):
            shown.paste(min(n, VOID_INDEX), (0, 0), object_mask(obj, width, height))
        wrong: Counter[str] = Counter()
        for want, got, cls in zip(shown.tobytes(), masks.instances, masks.classes, strict=True):
            if got == VOID_INDEX and contour:
                ok = cls == void_name
            elif got == 0:
                ok = want == 0 and cls == "background"
            else:
                ok = got == want and cls == objects[got - 1]["class"]
            if not ok:
                what = (
                    "background" if want == 0 else f"object {want} ({objects[want - 1]['class']})"
                )
                wrong[f"{what} read as instance {got}, class {cls!r}"] += 1
        assert not wrong, f"{masks.id}: pixels read wrong: {dict(wrong)}"

"""The Pascal VOC pieces of the export, as pure functions (no server, no files).

- names: an image's output name (its name without extension, optionally prefixed with its
  dataset's name) and how clashes are resolved;
- the train/val split;
- palettes, the class and object masks with their "neutral" contours;
- the VOC XML of one image, ``colors.txt``, ``labelmap.txt`` and the ``ImageSets`` lists
  (the split lists and the devkit's per-class lists).

Conventions (README.md): boxes are 1-based and inclusive, as in the VOC devkit; mask index 0 is
background, 255 the neutral boundary; class ``i`` of the meta (0-based) has index ``i + 1``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet

from PIL import Image, ImageChops, ImageColor

BACKGROUND = 0
NEUTRAL = 255
BACKGROUND_RGB = (0, 0, 0)
NEUTRAL_RGB = (224, 224, 192)
#: the names of the background and of the contour colour in ``colors.txt`` and ``labelmap.txt``
BACKGROUND_NAME = "background"
NEUTRAL_NAME = "neutral"
#: the highest class or instance index a mask can hold (255 is the boundary)
MAX_INDEX = 254
SPLITS = ("train", "val")
RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]


# -- names -----------------------------------------------------------------------------------


#: bytes a name may take before its suffix (``_12``) and extension: file names are at most 255
NAME_BYTES = 200


def fit_bytes(text: str, budget: int = NAME_BYTES) -> str:
    """``text`` cut to ``budget`` bytes of UTF-8, on a character boundary."""
    return text.encode()[:budget].decode(errors="ignore")


def output_name(image_name: str, dataset_name: str, add_prefix: bool) -> str:
    """The name of an image's files without extension: ``<dataset>_<stem>`` or ``<stem>``,
    cut to ``NAME_BYTES`` (a 100-character name of 3-byte characters would not fit)."""
    stem = os.path.splitext(image_name)[0] or image_name
    return fit_bytes(f"{dataset_name}_{stem}" if add_prefix else stem)


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with clashes renamed ``<name>_1``, ``<name>_2``... (first one keeps its name).

    Two images clash when they share a name without extension (``a.png`` and ``a.jpg``), or,
    without the dataset prefix, a name in two datasets. A new name never takes one already used.
    """
    taken = set(names)
    used: set[str] = set()
    out: list[str] = []
    for name in names:
        new, n = name, 0
        while new in used or (new != name and new in taken):
            n += 1
            new = f"{name}_{n}"
        used.add(new)
        out.append(new)
    return out


# -- the split -------------------------------------------------------------------------------


def preassigned_split(dataset_name: str, image_tags: Iterable[str]) -> str | None:
    """``train``/``val`` when the dataset is named so, else when the image is tagged so.

    The dataset's name wins over tags; an image tagged both is ``train``.
    """
    if dataset_name in SPLITS:
        return dataset_name
    tags = set(image_tags)
    return next((s for s in SPLITS if s in tags), None)


def assign_splits(preassigned: Sequence[str | None], coef: float) -> list[str]:
    """Fill the unassigned (``None``) entries in order: the first ``int(n * coef)`` go to
    ``train``, the rest to ``val`` (``n`` is how many were unassigned)."""
    free = [i for i, split in enumerate(preassigned) if split is None]
    n_train = int(len(free) * coef)
    out = [split or "" for split in preassigned]
    for k, i in enumerate(free):
        out[i] = "train" if k < n_train else "val"
    return out


def image_sets(names: Sequence[str], splits: Sequence[str]) -> dict[str, str]:
    """The text of ``train.txt``, ``val.txt`` and ``trainval.txt``: one name a line."""
    lists: dict[str, list[str]] = {"train": [], "val": [], "trainval": []}
    for name, split in zip(names, splits, strict=True):
        lists[split].append(name)
        lists["trainval"].append(name)
    return {key: "".join(f"{n}\n" for n in items) for key, items in lists.items()}


def class_lists(
    names: Sequence[str],
    splits: Sequence[str],
    present: Sequence[AbstractSet[str]],
    classes: Sequence[str],
) -> dict[tuple[str, str], str]:
    """The devkit's classification lists, ``(class, split)`` -> the text of
    ``ImageSets/Main/<class>_<split>.txt``, for every class and ``train``, ``val``,
    ``trainval``: the split's images in its list's order, each ``<image> 1`` when it has an
    object of the class (``present``: the classes of each image), else ``<image> -1``."""
    rows = list(zip(names, splits, present, strict=True))
    out: dict[tuple[str, str], str] = {}
    for cls in classes:
        for key in ("train", "val", "trainval"):
            out[cls, key] = "".join(
                f"{name} {1 if cls in has else -1}\n"
                for name, split, has in rows
                if key in (split, "trainval")
            )
    return out


# -- colours ---------------------------------------------------------------------------------


def hex_to_rgb(color: str) -> RGB:
    """``#RRGGBB`` to ``(r, g, b)``."""
    r, g, b = ImageColor.getrgb(color)[:3]
    return r, g, b


def voc_colormap() -> list[RGB]:
    """The 256 colours of the VOC devkit's ``labelcolormap`` (index 255 is (224, 224, 192))."""
    colors: list[RGB] = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append((r, g, b))
    return colors


def _flat(colors: Sequence[RGB]) -> list[int]:
    return [v for rgb in colors for v in rgb]


def class_palette(class_colors: Sequence[RGB]) -> list[int]:
    """A 256-entry palette: 0 black, the classes' colours at 1..n, 255 neutral; unused
    entries keep the VOC colormap."""
    if len(class_colors) > MAX_INDEX:
        raise ValueError(f"a mask holds at most {MAX_INDEX} classes; got {len(class_colors)}")
    colors = voc_colormap()
    colors[BACKGROUND] = (0, 0, 0)
    for i, rgb in enumerate(class_colors, start=1):
        colors[i] = rgb
    colors[NEUTRAL] = NEUTRAL_RGB
    return _flat(colors)


def object_palette() -> list[int]:
    """The palette of object masks: the VOC colormap (instance ``i`` in VOC's colour ``i``)."""
    return _flat(voc_colormap())


def _near(rgb: RGB) -> Iterator[RGB]:
    """The colours next to ``rgb``, nearest first: one channel moved by 1, 2, ... (blue first)."""
    for k in range(1, 256):
        for channel in (2, 1, 0):
            for step in (k, -k):
                moved = list(rgb)
                moved[channel] += step
                if 0 <= moved[channel] <= 255:
                    yield moved[0], moved[1], moved[2]


def distinct_colors(colors: Sequence[RGB]) -> list[RGB]:
    """``colors`` with each one already taken (by the background's black, the neutral colour or
    an earlier class) moved to the nearest free colour, so a mask's colour names one class.

    Colours are taken in order: the first class keeps its colour, a later one moves.
    """
    taken = {BACKGROUND_RGB, NEUTRAL_RGB}
    out: list[RGB] = []
    for rgb in colors:
        if rgb in taken:  # about 765 neighbours, at most 256 taken: there is always a free one
            rgb = next(c for c in _near(rgb) if c not in taken)
        taken.add(rgb)
        out.append(rgb)
    return out


def colors_txt(classes: Sequence[tuple[str, RGB]]) -> str:
    """``r g b name`` lines in palette order: background (0), the classes (1..n), neutral (255)."""
    lines = [(*BACKGROUND_RGB, BACKGROUND_NAME)]
    lines += [(*rgb, name) for name, rgb in classes]
    lines.append((*NEUTRAL_RGB, NEUTRAL_NAME))
    return "".join(f"{r} {g} {b} {name}\n" for r, g, b, name in lines)


def labelmap_txt(classes: Sequence[tuple[str, RGB]]) -> str:
    """The ``labelmap.txt`` dataset tools read to name mask colours: a comment line, then
    ``name:r,g,b::`` lines (no parts, no actions): background, neutral, the classes in order."""
    lines = [(BACKGROUND_NAME, BACKGROUND_RGB), (NEUTRAL_NAME, NEUTRAL_RGB), *classes]
    return "# label:color_rgb:parts:actions\n" + "".join(
        f"{name}:{r},{g},{b}::\n" for name, (r, g, b) in lines
    )


def labelmap_problems(class_names: Iterable[str]) -> list[str]:
    """What in ``labelmap.txt`` tools that read it will refuse: a class name that holds the
    file's separator ``:``, or that is the background's or the neutral colour's name."""
    problems: list[str] = []
    for name in class_names:
        if ":" in name:
            problems.append(f"class {name!r}: labelmap.txt cannot hold a name with ':'")
        elif name in (BACKGROUND_NAME, NEUTRAL_NAME):
            what = "the background" if name == BACKGROUND_NAME else "the contour colour"
            problems.append(f"class {name!r}: labelmap.txt lists {name!r} already, for {what}")
    return problems


# -- masks -----------------------------------------------------------------------------------


def _grow(box: Box, by: int, width: int, height: int) -> Box:
    left, top, right, bottom = box
    return max(0, left - by), max(0, top - by), min(width, right + by), min(height, bottom + by)


def _shifted(img: Image.Image, dx: int, dy: int, fill: int) -> Image.Image:
    """``img`` moved by ``(dx, dy)``; what comes in from outside is ``fill``."""
    out = Image.new("L", img.size, fill)
    out.paste(img, (dx, dy))
    return out


def _erode(mask: Image.Image) -> Image.Image:
    """Minimum over each pixel's 3x3 square; outside the image counts as inside."""
    for dx, dy in ((1, 0), (0, 1)):
        mask = ImageChops.darker(
            mask,
            ImageChops.darker(_shifted(mask, dx, dy, 255), _shifted(mask, -dx, -dy, 255)),
        )
    return mask


def _dilate(mask: Image.Image, radius: int) -> Image.Image:
    """Maximum over each pixel's ``(2 * radius + 1)``-square, in O(log radius) steps: a step
    of ``s`` joins shifts by ``-s, 0, +s``; with ``s <= reach + 1`` the covered run stays whole."""
    for dx, dy in ((1, 0), (0, 1)):
        reach = 0
        while reach < radius:
            step = min(reach + 1, radius - reach)
            mask = ImageChops.lighter(
                mask,
                ImageChops.lighter(
                    _shifted(mask, step * dx, step * dy, 0),
                    _shifted(mask, -step * dx, -step * dy, 0),
                ),
            )
            reach += step
    return mask


def contour_band(mask: Image.Image, thickness: int) -> Image.Image | None:
    """The "neutral" band around an object: mode ``L``, 255 on it, ``None`` when empty.

    The object's boundary pixels (inside it, with a pixel outside it among their 8
    neighbours; the image's edge is not a boundary) widened by ``thickness`` on each side:
    ``2 * thickness + 1`` pixels across a straight edge. ``thickness`` 0 draws none.
    """
    if thickness <= 0:
        return None
    bbox = mask.getbbox()
    if bbox is None:
        return None
    width, height = mask.size
    # work in a crop around the object: the band reaches ``thickness`` past it
    crop_box = _grow(bbox, thickness + 1, width, height)
    crop = mask.crop(crop_box).point(lambda v: 255 if v else 0)
    band = _dilate(ImageChops.subtract(crop, _erode(crop)), thickness)
    out = Image.new("L", mask.size, 0)
    out.paste(band, crop_box[:2])
    return out


def draw_masks(
    size: tuple[int, int],
    objects: Sequence[tuple[int, Image.Image]],
    thickness: int,
    class_colors: Sequence[RGB],
) -> tuple[Image.Image, Image.Image]:
    """The ``SegmentationClass`` and ``SegmentationObject`` images of one image.

    ``objects`` are ``(class index, mask)`` pairs in drawing order (a later object covers an
    earlier one); masks are mode ``L``, non-zero inside. Each object is filled (class index /
    instance number 1..n), then its contour band is drawn in 255. Instances past
    :data:`MAX_INDEX` are left out of the object mask (the class mask still has them).
    """
    class_img = Image.new("P", size, BACKGROUND)
    object_img = Image.new("P", size, BACKGROUND)
    class_img.putpalette(class_palette(class_colors))
    object_img.putpalette(object_palette())
    for instance, (class_index, mask) in enumerate(objects, start=1):
        if not 1 <= class_index <= MAX_INDEX:
            raise ValueError(f"class index {class_index} is outside 1..{MAX_INDEX}")
        inside = mask.point(lambda v: 255 if v else 0)
        class_img.paste(class_index, (0, 0), inside)
        if instance <= MAX_INDEX:
            object_img.paste(instance, (0, 0), inside)
        band = contour_band(inside, thickness)
        if band is not None:
            class_img.paste(NEUTRAL, (0, 0), band)
            object_img.paste(NEUTRAL, (0, 0), band)
    return class_img, object_img


# -- XML -------------------------------------------------------------------------------------


def voc_box(box: tuple[int, int, int, int]) -> Box:
    """A 0-based inclusive pixel box ``(left, top, right, bottom)`` as VOC's 1-based
    ``(xmin, ymin, xmax, ymax)``: every coordinate plus one, as the VOC devkit counts."""
    left, top, right, bottom = box
    return left + 1, top + 1, right + 1, bottom + 1


def _sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def voc_xml(
    *,
    folder: str,
    filename: str,
    width: int,
    height: int,
    objects: Sequence[tuple[str, Box]],
    source: dict[str, str] | None = None,
) -> bytes:
    """One ``Annotations/<name>.xml``: UTF-8, indented, no declaration (as VOC's own)."""
    root = ET.Element("annotation")
    _sub(root, "folder", folder)
    _sub(root, "filename", filename)
    if source:
        src = _sub(root, "source")
        for key, value in source.items():
            _sub(src, key, value)
    size = _sub(root, "size")
    _sub(size, "width", width)
    _sub(size, "height", height)
    _sub(size, "depth", 3)
    _sub(root, "segmented", 1)
    for name, (xmin, ymin, xmax, ymax) in objects:
        obj = _sub(root, "object")
        _sub(obj, "name", name)
        _sub(obj, "pose", "Unspecified")
        _sub(obj, "truncated", 0)
        _sub(obj, "difficult", 0)
        bndbox = _sub(obj, "bndbox")
        _sub(bndbox, "xmin", xmin)
        _sub(bndbox, "ymin", ymin)
        _sub(bndbox, "xmax", xmax)
        _sub(bndbox, "ymax", ymax)
    ET.indent(root, space="    ")
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=False)) + b"\n"

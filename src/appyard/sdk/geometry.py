"""Masks and boxes of labeled objects: the pixel meaning of the annotation format, shared by apps.

- A ``rectangle`` covers ``left..right`` x ``top..bottom``, both ends included.
- A ``polygon`` has its points rounded to the nearest pixel (halves up); the exterior is filled,
  its edges included, then each hole is cut out (its edges included).
- A ``bitmap`` covers the set pixels of its PNG, placed with its top-left pixel at ``origin``.

Parts outside the ``width x height`` canvas are clipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image, ImageDraw

from appyard.schemas.annotation import Bitmap, LabeledObject, Polygon, Rectangle, decode_bitmap

GeometryModel = Rectangle | Polygon | Bitmap
ObjectLike = LabeledObject | GeometryModel | Mapping[str, Any]

__all__ = ["bounding_box", "object_mask"]


def _geometry(obj: ObjectLike) -> GeometryModel:
    """The geometry of an object (model or JSON), or of a bare geometry (model or JSON)."""
    if isinstance(obj, LabeledObject):
        return obj.geometry
    if isinstance(obj, Rectangle | Polygon | Bitmap):
        return obj
    if isinstance(obj, Mapping):
        if "geometry" in obj:
            return LabeledObject.model_validate(dict(obj)).geometry
        kind = obj.get("type")
        if kind == "rectangle":
            return Rectangle.model_validate(dict(obj))
        if kind == "polygon":
            return Polygon.model_validate(dict(obj))
        if kind == "bitmap":
            return Bitmap.model_validate(dict(obj))
        raise ValueError(
            f"not an object or a geometry: geometry type {kind!r} is none of "
            "rectangle, polygon, bitmap"
        )
    raise TypeError(f"expected a LabeledObject, a geometry or a dict, not {type(obj).__name__}")


def _pixel(v: float) -> int:
    """Round to the nearest pixel, halves up (``2.5 -> 3``, ``-0.5 -> 0``)."""
    return math.floor(v + 0.5)


def _ring(points: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    return [(_pixel(x), _pixel(y)) for x, y in points]


def _bitmap_mask(g: Bitmap) -> Image.Image:
    return decode_bitmap(g.data)


def object_mask(obj: ObjectLike, width: int, height: int) -> Image.Image:
    """A ``width x height`` mode ``L`` image: 255 where the object is, 0 elsewhere."""
    canvas = Image.new("L", (int(width), int(height)), 0)
    g = _geometry(obj)
    draw = ImageDraw.Draw(canvas)
    if isinstance(g, Rectangle):
        draw.rectangle((g.left, g.top, g.right, g.bottom), fill=255)
    elif isinstance(g, Polygon):
        draw.polygon(_ring(g.exterior), fill=255, outline=255)
        for hole in g.interiors:
            draw.polygon(_ring(hole), fill=0, outline=0)
    else:
        bitmap = _bitmap_mask(g)
        canvas.paste(255, (g.origin[0], g.origin[1]), mask=bitmap)
    return canvas


def bounding_box(obj: ObjectLike) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the object, all four pixels included.

    A polygon's box is the min/max of its exterior points, rounded as for its mask; a bitmap's
    is that of its set pixels (``ValueError`` if it has none).
    """
    g = _geometry(obj)
    if isinstance(g, Rectangle):
        return g.left, g.top, g.right, g.bottom
    if isinstance(g, Polygon):
        ring = _ring(g.exterior)
        xs = [x for x, _ in ring]
        ys = [y for _, y in ring]
        return min(xs), min(ys), max(xs), max(ys)
    box = _bitmap_mask(g).getbbox()
    if box is None:
        raise ValueError("the bitmap has no set pixel")
    left, top, right, bottom = box
    ox, oy = g.origin
    return ox + left, oy + top, ox + right - 1, oy + bottom - 1

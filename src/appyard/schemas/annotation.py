"""The annotation format of images projects, and the project meta it is checked against.

One format for the wire, the server's database, team-files imports and the SDK (see
``docs/data.md``). Coordinates are pixels: ``x`` to the right, ``y`` down, ``(0, 0)`` the
top-left pixel; a point lies inside an image of ``width x height`` when
``0 <= x <= width - 1`` and ``0 <= y <= height - 1``.

Structure is checked by the models; meaning (the class exists and has the object's shape, the
tags exist, the geometry lies inside the image) by :func:`check_annotation`, which raises
:class:`AnnotationProblem` naming the field, so the server can answer a 422 with that field.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from PIL import Image

Shape = Literal["rectangle", "polygon", "bitmap"]
SHAPES: tuple[Shape, ...] = ("rectangle", "polygon", "bitmap")
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
#: a distinct colour for each class without one, in order
PALETTE = (
    "#E53935",
    "#1E88E5",
    "#43A047",
    "#FDD835",
    "#8E24AA",
    "#00ACC1",
    "#FB8C00",
    "#6D4C41",
    "#D81B60",
    "#3949AB",
    "#7CB342",
    "#546E7A",
)


def _color(v: str) -> str:
    if not _COLOR.match(v):
        raise ValueError("must be a colour like '#FF8800'")
    return v.upper()


#: ``#RRGGBB``, stored upper-case
Color = Annotated[str, AfterValidator(_color)]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f/\\]+$")]
#: pixel coordinates are bounded: beyond any image, and a huge integer cannot become a float
Pixel = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
Coord = Annotated[float, Field(ge=-1_000_000, le=1_000_000, allow_inf_nan=False)]
Point = tuple[Coord, Coord]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- the project meta ------------------------------------------------------------------------


class ObjClass(_Model):
    """An object class: objects of it all have ``shape``; ``color`` is ``#RRGGBB``."""

    name: Name
    shape: Shape
    color: Color | None = None


class TagMeta(_Model):
    """A tag name images and objects may carry (``train``/``val`` drive the export's split)."""

    name: Name
    color: Color | None = None


class ProjectMeta(_Model):
    """The classes and tags of a project; names are unique; colours are filled in if missing."""

    classes: list[ObjClass] = Field(default_factory=list, max_length=1000)
    tags: list[TagMeta] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _unique_and_coloured(self) -> ProjectMeta:
        named: tuple[tuple[str, list[str]], ...] = (
            ("classes", [c.name for c in self.classes]),
            ("tags", [t.name for t in self.tags]),
        )
        for kind, names in named:
            seen: set[str] = set()
            for i, name in enumerate(names):
                if name in seen:
                    raise ValueError(f"{kind}[{i}]: the name {name!r} is used twice")
                seen.add(name)
        for i, c in enumerate(self.classes):
            if c.color is None:
                c.color = PALETTE[i % len(PALETTE)]
        return self

    def get_class(self, name: str) -> ObjClass | None:
        return next((c for c in self.classes if c.name == name), None)

    def tag_names(self) -> set[str]:
        return {t.name for t in self.tags}


# -- geometries ------------------------------------------------------------------------------


class Rectangle(_Model):
    """An axis-aligned box; ``right``/``bottom`` are the last pixels inside it (inclusive)."""

    type: Literal["rectangle"] = "rectangle"
    left: Pixel
    top: Pixel
    right: Pixel
    bottom: Pixel

    @model_validator(mode="after")
    def _ordered(self) -> Rectangle:
        if self.right < self.left or self.bottom < self.top:
            raise ValueError("needs left <= right and top <= bottom")
        return self


class Polygon(_Model):
    """A polygon with holes; each ring has at least 3 points ``[x, y]``."""

    type: Literal["polygon"] = "polygon"
    exterior: list[Point] = Field(min_length=3, max_length=100_000)
    interiors: list[Annotated[list[Point], Field(min_length=3)]] = Field(
        default_factory=list, max_length=1000
    )


class Bitmap(_Model):
    """A mask: ``data`` is a base64 PNG whose non-zero pixels are the object, placed with its
    top-left pixel at ``origin`` ``[x, y]``."""

    type: Literal["bitmap"] = "bitmap"
    origin: tuple[Pixel, Pixel]
    data: str = Field(min_length=1)


Geometry = Annotated[Rectangle | Polygon | Bitmap, Field(discriminator="type")]


class LabeledObject(_Model):
    """One object on an image: its class, its geometry (of the class's shape), its tags."""

    class_: Name = Field(alias="class")
    geometry: Geometry
    tags: list[Name] = Field(default_factory=list, max_length=100)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ImageSize(_Model):
    width: int = Field(ge=1, le=100_000)
    height: int = Field(ge=1, le=100_000)


class Annotation(_Model):
    """What is on one image: its size, its tags, its objects."""

    size: ImageSize
    tags: list[Name] = Field(default_factory=list, max_length=100)
    objects: list[LabeledObject] = Field(default_factory=list, max_length=10_000)

    @classmethod
    def empty(cls, width: int, height: int) -> Annotation:
        return cls(size=ImageSize(width=width, height=height))

    def to_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


# -- meaning ---------------------------------------------------------------------------------


class AnnotationProblem(ValueError):
    """An annotation that does not fit its image or its project; ``field`` says where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


#: the largest bitmap accepted (pixels): a PNG's header can claim any size, and decoding it
#: takes a byte per pixel
MAX_BITMAP_PIXELS = 40_000_000


def open_bitmap(data: str) -> Image.Image:
    """The PNG of a bitmap, opened but not decoded (its size is known, its pixels are not).

    Raises ``ValueError`` when ``data`` is not base64 of a PNG, or claims more than
    ``MAX_BITMAP_PIXELS``.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("is not valid base64") from exc
    too_big = ValueError(f"claims more than {MAX_BITMAP_PIXELS} pixels, the most a bitmap may have")
    try:
        with warnings.catch_warnings():  # the size is checked here, below Pillow's own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError as exc:
        raise too_big from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError("is not a PNG image") from exc
    if img.format != "PNG":
        raise ValueError(f"is a {img.format} image; a bitmap must be a PNG")
    if img.width * img.height > MAX_BITMAP_PIXELS:
        raise ValueError(
            f"is {img.width}x{img.height}: it claims more than {MAX_BITMAP_PIXELS} pixels, "
            "the most a bitmap may have"
        )
    return img


def bitmap_mask(img: Image.Image) -> Image.Image:
    """Decode an :func:`open_bitmap` image to mode ``L``: 255 where set, 0 elsewhere."""
    from PIL import Image

    try:
        return img.convert("L").point(lambda v: 255 if v else 0)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"is a damaged PNG ({exc})") from exc


def decode_bitmap(data: str) -> Image.Image:
    """A bitmap's mask, mode ``L`` (255 where set); ``ValueError`` when it is not a usable PNG."""
    return bitmap_mask(open_bitmap(data))


def encode_bitmap(width: int, height: int, mask: bytes) -> str:
    """A bitmap's ``data``: a 1-bit PNG of ``mask`` (one byte per pixel, non-zero = set)."""
    from PIL import Image

    img = Image.frombytes("L", (width, height), bytes(mask)).point(lambda v: 255 if v else 0)
    buf = io.BytesIO()
    img.convert("1").save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def _check_point(field: str, x: float, y: float, width: int, height: int) -> None:
    if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
        raise AnnotationProblem(
            field,
            f"the point ({x:g}, {y:g}) is outside the {width}x{height} image "
            f"(x must be within 0..{width - 1}, y within 0..{height - 1})",
        )


def check_annotation(ann: Annotation, meta: ProjectMeta, width: int, height: int) -> None:
    """Check ``ann`` against its image's size and its project's meta.

    Raises :class:`AnnotationProblem` at the first problem, with a field path such as
    ``objects[2].geometry.exterior[5]``.
    """
    if (ann.size.width, ann.size.height) != (width, height):
        raise AnnotationProblem(
            "size",
            f"says {ann.size.width}x{ann.size.height} but the image is {width}x{height}",
        )
    tags = meta.tag_names()
    for i, tag in enumerate(ann.tags):
        if tag not in tags:
            raise AnnotationProblem(
                f"tags[{i}]", f"the project has no tag {tag!r}; add it to the project meta first"
            )
    for n, obj in enumerate(ann.objects):
        where = f"objects[{n}]"
        cls = meta.get_class(obj.class_)
        if cls is None:
            known = ", ".join(repr(c.name) for c in meta.classes) or "none"
            raise AnnotationProblem(
                f"{where}.class",
                f"the project has no class {obj.class_!r} (its classes: {known}); "
                "add it to the project meta first",
            )
        if cls.shape != obj.geometry.type:
            raise AnnotationProblem(
                f"{where}.geometry.type",
                f"class {cls.name!r} is a {cls.shape}, but the object is a {obj.geometry.type}",
            )
        for i, tag in enumerate(obj.tags):
            if tag not in tags:
                raise AnnotationProblem(
                    f"{where}.tags[{i}]",
                    f"the project has no tag {tag!r}; add it to the project meta first",
                )
        _check_geometry(f"{where}.geometry", obj.geometry, width, height)


def _check_geometry(where: str, g: Rectangle | Polygon | Bitmap, width: int, height: int) -> None:
    if isinstance(g, Rectangle):
        _check_point(where, g.left, g.top, width, height)
        _check_point(where, g.right, g.bottom, width, height)
    elif isinstance(g, Polygon):
        for i, (x, y) in enumerate(g.exterior):
            _check_point(f"{where}.exterior[{i}]", x, y, width, height)
        for r, ring in enumerate(g.interiors):
            for i, (x, y) in enumerate(ring):
                _check_point(f"{where}.interiors[{r}][{i}]", x, y, width, height)
    else:
        try:
            img = open_bitmap(g.data)
        except ValueError as exc:
            raise AnnotationProblem(f"{where}.data", str(exc)) from exc
        (w, h), (ox, oy) = img.size, g.origin
        if ox < 0 or oy < 0 or ox + w > width or oy + h > height:
            raise AnnotationProblem(
                where,
                f"the {w}x{h} bitmap at origin ({ox}, {oy}) does not fit "
                f"in the {width}x{height} image",
            )
        try:
            mask = bitmap_mask(img)
        except ValueError as exc:
            raise AnnotationProblem(f"{where}.data", str(exc)) from exc
        if mask.getbbox() is None:
            raise AnnotationProblem(f"{where}.data", "the bitmap has no set pixel")

"""Bitmaps whose PNG header claims a huge size are refused from the header, never decoded."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from appyard.schemas.annotation import (
    MAX_BITMAP_PIXELS,
    Annotation,
    AnnotationProblem,
    ProjectMeta,
    check_annotation,
    encode_bitmap,
)
from tests.support import World

META = ProjectMeta.model_validate({"classes": [{"name": "blob", "shape": "bitmap"}]})


def _claiming(width: int, height: int) -> str:
    """A real 1x1 PNG whose header is rewritten to claim ``width x height`` (CRC fixed)."""
    buf = io.BytesIO()
    Image.new("1", (1, 1), 1).save(buf, format="PNG")
    png = bytearray(buf.getvalue())
    # the IHDR chunk: length (4) + "IHDR" (4) + width, height ... then its CRC
    start = 8
    length = struct.unpack(">I", png[start : start + 4])[0]
    body = start + 8
    png[body : body + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(png[start + 4 : body + length]))
    png[body + length : body + length + 4] = struct.pack(">I", crc)
    return base64.b64encode(bytes(png)).decode()


def _ann(data: str, origin: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    return {
        "size": {"width": 100, "height": 80},
        "objects": [
            {"class": "blob", "geometry": {"type": "bitmap", "origin": list(origin), "data": data}}
        ],
    }


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (_claiming(30_000, 30_000), f"more than {MAX_BITMAP_PIXELS} pixels"),
        (_claiming(13_000, 13_000), "13000x13000"),
        (_claiming(200, 10), "does not fit"),
        (encode_bitmap(3, 3, bytes(9)), "no set pixel"),
    ],
)
def test_the_header_decides_before_any_decoding(data: str, says: str) -> None:
    with pytest.raises(AnnotationProblem) as caught:
        check_annotation(Annotation.model_validate(_ann(data)), META, 100, 80)
    assert says in caught.value.message
    assert caught.value.field.startswith("objects[0].geometry")


def test_a_damaged_png_is_a_problem_of_its_data() -> None:
    # the header says 50x50 but the pixel data is that of 1x1: decoding fails
    with pytest.raises(AnnotationProblem) as caught:
        check_annotation(Annotation.model_validate(_ann(_claiming(50, 50))), META, 100, 80)
    assert caught.value.field == "objects[0].geometry.data"


def test_the_server_answers_422_not_500(world: World) -> None:
    c = world.admin
    project = c.ok("POST", "/projects", json={"workspace_id": world.workspace_id, "name": "b"})
    c.ok("PUT", f"/projects/{project['id']}/meta", json=META.model_dump(mode="json"))
    dataset = c.ok("POST", "/datasets", json={"project_id": project["id"], "name": "d"})
    buf = io.BytesIO()
    Image.new("RGB", (100, 80)).save(buf, format="PNG")
    image = c.ok(
        "POST",
        "/images",
        data={"dataset_id": str(dataset["id"]), "name": "i.png"},
        files={"file": ("i.png", buf.getvalue(), "image/png")},
    )
    for data in (_claiming(30_000, 30_000), _claiming(13_000, 13_000), _claiming(50, 50)):
        body = {"items": [{"image_id": image["id"], "annotation": _ann(data)}]}
        r = c.http.put("/annotations", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"].startswith("items[0].annotation.objects[0].geometry")

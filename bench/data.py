"""What images projects and team files cost at 10,000 images (SQLite by default).

Through the SDK, against a real server on this machine:
- uploads N small PNG images into one dataset (one request each), timing each;
- uploads their annotations (3 objects each: rectangle, polygon, bitmap) in batches of 500;
- times listing all N images (pages of 500), downloading all annotations, a project's info
  (with its counts), reading one image's annotation, and a meta update checked against N images;
- uploads and downloads a 64 MiB team file.

Run: ``python bench/data.py [--images 10000] [--postgres]``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stats import fmt, timed  # noqa: E402
from PIL import Image  # noqa: E402
from tests.support import Client, ServerProc, pg_database  # noqa: E402

import appyard as ay  # noqa: E402
from appyard.schemas.annotation import Annotation, encode_bitmap  # noqa: E402

W, H = 64, 48
META = {
    "classes": [
        {"name": "box", "shape": "rectangle"},
        {"name": "tri", "shape": "polygon"},
        {"name": "blob", "shape": "bitmap"},
    ],
    "tags": [{"name": "train"}, {"name": "val"}],
}


def png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (W, H), (i % 256, (i // 256) % 256, 90)).save(buf, format="PNG")
    return buf.getvalue()


def annotation(i: int) -> dict:  # type: ignore[type-arg]
    blob = encode_bitmap(4, 4, bytes([1] * 16))
    return {
        "size": {"width": W, "height": H},
        "tags": ["train" if i % 2 else "val"],
        "objects": [
            {
                "class": "box",
                "geometry": {"type": "rectangle", "left": 1, "top": 2, "right": 20, "bottom": 30},
            },
            {
                "class": "tri",
                "geometry": {"type": "polygon", "exterior": [[30, 5], [60, 5], [45, 40]]},
            },
            {"class": "blob", "geometry": {"type": "bitmap", "origin": [5, 35], "data": blob}},
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="appyard-bench-data-"))
    if args.postgres:
        with pg_database() as url:
            run(ServerProc(tmp / "server", database_url=url), args)
    else:
        run(ServerProc(tmp / "server"), args)


def run(server: ServerProc, args: argparse.Namespace) -> None:
    server.start()
    try:
        admin = Client(server.url, server.admin_token)
        team = admin.ok("POST", "/teams", json={"name": "data"})["id"]
        ws = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "w"})["id"]
        api = ay.Api(server.url, server.admin_token)
        project = api.project.create(ws, "bench")
        api.project.update_meta(project.id, META)
        dataset = api.dataset.create(project.id, "all")
        n = args.images
        print(f"database: {'PostgreSQL' if args.postgres else 'SQLite'}; {n} images of {W}x{H}")

        blobs = [png(i) for i in range(n)]
        ids: list[int] = []
        t0 = time.perf_counter()
        uploads = []
        for i, data in enumerate(blobs):
            s = time.perf_counter()
            ids.append(api.image.upload_bytes(dataset.id, f"img{i:05d}.png", data).id)
            uploads.append(time.perf_counter() - s)
        total = time.perf_counter() - t0
        print(f"upload one image:            {fmt(uploads)}   ({n / total:.0f} images/s)")

        anns = [annotation(i) for i in range(n)]
        t0 = time.perf_counter()
        api.annotation.upload_jsons(ids, anns)
        total = time.perf_counter() - t0
        per_batch = total / max(1, (n + 499) // 500)
        print(
            f"upload annotations:          {per_batch * 1000:8.2f} ms per batch of 500"
            f"   ({n / total:.0f} annotations/s)"
        )

        t0 = time.perf_counter()
        listed = api.image.get_list(dataset.id)
        print(f"list all {len(listed)} images:       {(time.perf_counter() - t0) * 1000:8.2f} ms")
        t0 = time.perf_counter()
        back = api.annotation.download_jsons(ids)
        assert back[-1] == Annotation.model_validate(anns[-1]).to_json()  # normalized, equal
        print(f"download all annotations:    {(time.perf_counter() - t0) * 1000:8.2f} ms")
        print(
            "project info (with counts): "
            + fmt(timed(lambda: api.project.get_info_by_id(project.id), 50))
        )
        print(
            "one image's annotation:     "
            + fmt(timed(lambda: api.annotation.download_json(ids[n // 2]), 50))
        )
        meta = {**META, "tags": [*META["tags"], {"name": "extra"}]}
        print(
            f"meta update, {n} images:   "
            + fmt(timed(lambda: api.project.update_meta(project.id, meta), 10))
        )

        big = Path(tempfile.mkdtemp()) / "big.bin"
        big.write_bytes(os.urandom(64 * 1024 * 1024))
        t0 = time.perf_counter()
        api.file.upload(team, big, "/bench/big.bin")
        up = time.perf_counter() - t0
        t0 = time.perf_counter()
        api.file.download(team, "/bench/big.bin", big.with_suffix(".back"))
        down = time.perf_counter() - t0
        print(
            f"team file of 64 MiB:         upload {64 / up:.0f} MiB/s, download {64 / down:.0f} MiB/s"
        )
        api.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()

"""Put a small folder of annotated images into team files, for the import pipelines.

    python examples/pipelines/make_images.py                          # /incoming/cats
    python examples/pipelines/make_images.py /incoming/late --broken  # for retry-and-resume.yaml
    python examples/pipelines/make_images.py /incoming/late           # the same, fixed

Two datasets (``indoor/`` and ``outdoor/``), a few PNG images each, every one with a box in
appyard's annotation format next to it (``<image>.json``), as ``appyard/import-images`` reads
them. With ``--broken`` one box reaches past its image, so the import refuses the folder,
naming that file; uploading again without it replaces the files with good ones. Credentials
and the team come from ``~/appyard.env`` (what ``appyard up`` writes).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

import appyard as ay

DATASETS = {"indoor": 3, "outdoor": 3}
SIZE = (96, 64)


def make_folder(root: Path, broken: bool = False) -> int:
    """Write the images and their annotations under ``root``; how many images. ``broken``:
    the last box reaches past its image."""
    made = 0
    for n_ds, (dataset, count) in enumerate(DATASETS.items()):
        folder = root / dataset
        folder.mkdir(parents=True)
        for i in range(count):
            left, top = 8 + 6 * i, 6 + 4 * n_ds
            right, bottom = left + 40, top + 30
            img = Image.new("RGB", SIZE, (30, 30, 40))
            ImageDraw.Draw(img).rectangle((left, top, right, bottom), fill=(230, 180, 60))
            name = f"cat-{i + 1}.png"
            img.save(folder / name)
            box = {"type": "rectangle", "left": left, "top": top, "right": right, "bottom": bottom}
            made += 1
            if broken and made == sum(DATASETS.values()):
                box["right"] = SIZE[0] + 10
            ann = {
                "size": {"width": SIZE[0], "height": SIZE[1]},
                "tags": [],
                "objects": [
                    {
                        "class": "cat",
                        "tags": [],
                        "geometry": box,
                    }
                ],
            }
            (folder / f"{name}.json").write_text(json.dumps(ann))
    return made


def upload_images(api: ay.Api, team_id: int, remote: str, broken: bool = False) -> int:
    """Make the folder and upload it to team path ``remote``; how many images."""
    with tempfile.TemporaryDirectory() as tmp:
        made = make_folder(Path(tmp) / "images", broken)
        api.file.upload_directory(team_id, Path(tmp) / "images", remote)
    return made


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--broken"]
    broken = "--broken" in sys.argv[1:]
    remote = args[0] if args else "/incoming/cats"
    with ay.Api.from_env() as api:
        made = upload_images(api, ay.env.team_id(), remote, broken)
    what = ", one annotation broken," if broken else ""
    print(f"{made} images in {len(DATASETS)} datasets{what} uploaded to {remote}")


if __name__ == "__main__":
    main()

"""Export to Pascal VOC: an images project (or one dataset) as a Pascal VOC ``.tar`` in team files.

Started on a project (``projectId``) or a dataset (``datasetId``); options in the state:
``pascalContourThickness``, ``trainSplitCoef``, ``addPrefixToImages`` (README.md). The archive
goes to ``/tmp/export-to-pascal-voc/export/<task_id>/<project_id>_<project_name>_pascal_voc.tar``
and becomes the task's ``archive`` output; in it, one top folder named as the archive holds
the VOC folders in its ``VOCdevkit/VOC/``. SIGTERM stops it at once (exit 0, "stopped").
"""

from __future__ import annotations

import io
import json
import signal
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pascal
from PIL import Image

import appyard as ay
from appyard.errors import AppyardError, NotFoundError
from appyard.schemas.annotation import Annotation, ProjectMeta
from appyard.schemas.projects import DatasetInfo, ImageInfo, ProjectInfo
from appyard.sdk.geometry import bounding_box, object_mask

APP_DIR = Path(__file__).resolve().parent
#: ``export-to-pascal-voc``: the folder of the archive in team files
APP_NAME = json.loads((APP_DIR / "config.json").read_text())["slug"].rsplit("/", 1)[-1]
#: annotations fetched per request (the server takes up to 500)
BATCH = 100
JPEG_QUALITY = 95
#: where the VOC folders are, inside the archive's top folder
VOC_DIR = "VOCdevkit/VOC"
#: a file name's most bytes
NAME_MAX = 255
LAYOUT = (
    "Annotations",
    "ImageSets/Main",
    "ImageSets/Segmentation",
    "JPEGImages",
    "SegmentationClass",
    "SegmentationObject",
)


class BadInput(Exception):
    """The app was started with something it cannot export (exit code 2)."""


class Stopped(BaseException):
    """SIGTERM arrived: leave at once (a ``BaseException`` so no ``except Exception`` eats it)."""


@dataclass
class Options:
    thickness: int
    coef: float
    prefix: bool

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Options:
        thickness = state.get("pascalContourThickness", 3)
        coef = state.get("trainSplitCoef", 0.8)
        prefix = state.get("addPrefixToImages", True)
        if (
            isinstance(thickness, bool)
            or not isinstance(thickness, int | float)
            or thickness != int(thickness)
            or not 0 <= thickness <= 100
        ):
            raise BadInput(
                f"pascalContourThickness must be a whole number 0..100; got {thickness!r}"
            )
        if isinstance(coef, bool) or not isinstance(coef, int | float) or not 0 <= coef <= 1:
            raise BadInput(f"trainSplitCoef must be a number from 0 to 1; got {coef!r}")
        if not isinstance(prefix, bool):
            raise BadInput(f"addPrefixToImages must be true or false; got {prefix!r}")
        return cls(int(thickness), float(coef), prefix)


@dataclass
class Exported:
    """What was written, in export order: names, pre-assigned splits, classes present."""

    names: list[str] = field(default_factory=list)
    preassigned: list[str | None] = field(default_factory=list)
    classes: list[set[str]] = field(default_factory=list)
    objects: int = 0


def resolve_target(api: ay.Api, session: ay.AppSession) -> tuple[ProjectInfo, DatasetInfo | None]:
    """``(project, dataset or None)`` from the target the app was started on."""
    target = session.target
    try:
        if target.name == "images_dataset":
            dataset = api.dataset.get_info_by_id(int(target.value))
            return api.project.get_info_by_id(dataset.project_id), dataset
        if target.name == "images_project":
            return api.project.get_info_by_id(int(target.value)), None
        dataset_id = ay.env.dataset_id(raise_not_found=False)
        if dataset_id is not None:
            dataset = api.dataset.get_info_by_id(dataset_id)
            return api.project.get_info_by_id(dataset.project_id), dataset
        project_id = ay.env.project_id(raise_not_found=False)
        if project_id is not None:
            return api.project.get_info_by_id(project_id), None
    except NotFoundError as exc:
        raise BadInput(f"{target.name} {target.value}: {exc}") from exc
    raise BadInput(
        "no project to export: start the app on an images project (state projectId) "
        "or an images dataset (state datasetId)"
    )


def to_jpeg(data: bytes) -> bytes:
    """The image as RGB JPEG; an RGB JPEG is kept byte for byte."""
    with Image.open(io.BytesIO(data)) as img:
        if img.format == "JPEG" and img.mode == "RGB":
            return data
        out = io.BytesIO()
        img.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
        return out.getvalue()


class Exporter:
    """Writes the VOC folders of one project into ``root`` (the archive's ``VOCdevkit/VOC``)."""

    def __init__(
        self, api: ay.Api, project: ProjectInfo, meta: ProjectMeta, options: Options, root: Path
    ) -> None:
        self.api = api
        self.project = project
        self.meta = meta
        self.options = options
        self.root = root
        self.class_index = {c.name: i for i, c in enumerate(meta.classes, start=1)}
        wanted = [pascal.hex_to_rgb(c.color or "#000000") for c in meta.classes]
        self.class_colors = pascal.distinct_colors(wanted)
        for c, want, got in zip(meta.classes, wanted, self.class_colors, strict=True):
            if got != want:
                print(
                    f"warning: class {c.name!r} is drawn in {','.join(map(str, got))} in the "
                    f"masks: its colour {c.color} is the background's, the contour's or an "
                    "earlier class's"
                )
        for problem in pascal.labelmap_problems(c.name for c in meta.classes):
            print(f"warning: {problem}; tools that read it will refuse the folder")
        self.out = Exported()
        for folder in LAYOUT:
            (root / folder).mkdir(parents=True, exist_ok=True)

    def image(
        self, name: str, dataset: DatasetInfo, info: ImageInfo, ann_json: dict[str, Any]
    ) -> None:
        """Write one image's JPEG, XML and masks as ``name``."""
        ann = Annotation.model_validate(ann_json)
        width, height = info.width, info.height
        boxes: list[tuple[str, pascal.Box]] = []
        masks: list[tuple[int, Image.Image]] = []
        for obj in ann.objects:
            index = self.class_index.get(obj.class_)
            if index is None:  # the server keeps annotations to the meta; be safe anyway
                print(f"warning: {info.name}: class {obj.class_!r} is not in the meta; skipped")
                continue
            boxes.append((obj.class_, pascal.voc_box(bounding_box(obj))))
            masks.append((index, object_mask(obj, width, height)))
        (self.root / "JPEGImages" / f"{name}.jpg").write_bytes(
            to_jpeg(self.api.image.download_bytes(info.id))
        )
        xml = pascal.voc_xml(
            folder=f"VOC_{self.project.name}",
            filename=f"{name}.jpg",
            width=width,
            height=height,
            objects=boxes,
            source={
                "database": f"appyard project {self.project.id}",
                "annotation": "PASCAL VOC",
                "image": f"appyard image {info.id}",
            },
        )
        (self.root / "Annotations" / f"{name}.xml").write_bytes(xml)
        class_img, object_img = pascal.draw_masks(
            (width, height), masks, self.options.thickness, self.class_colors
        )
        class_img.save(self.root / "SegmentationClass" / f"{name}.png", optimize=True)
        object_img.save(self.root / "SegmentationObject" / f"{name}.png", optimize=True)
        self.out.names.append(name)
        self.out.preassigned.append(pascal.preassigned_split(dataset.name, ann.tags))
        self.out.classes.append({cls for cls, _ in boxes})
        self.out.objects += len(boxes)

    def finish(self) -> dict[str, int]:
        """The split lists (``Segmentation`` and ``Main``), the per-class lists,
        ``colors.txt`` and ``labelmap.txt``; returns the split's counts."""
        splits = pascal.assign_splits(self.out.preassigned, self.options.coef)
        sets = pascal.image_sets(self.out.names, splits)
        for key, text in sets.items():
            for task in ("Segmentation", "Main"):
                (self.root / "ImageSets" / task / f"{key}.txt").write_text(text, encoding="utf-8")
        class_names = [c.name for c in self.meta.classes]
        lists = pascal.class_lists(self.out.names, splits, self.out.classes, class_names)
        for (cls, key), text in lists.items():
            file = f"{cls}_{key}.txt"
            if len(file.encode()) > NAME_MAX:
                print(f"warning: class {cls!r}: {file!r} is too long a file name; not written")
                continue
            (self.root / "ImageSets" / "Main" / file).write_text(text, encoding="utf-8")
        classes = list(zip(class_names, self.class_colors, strict=True))
        (self.root / "colors.txt").write_text(pascal.colors_txt(classes), encoding="utf-8")
        (self.root / "labelmap.txt").write_text(pascal.labelmap_txt(classes), encoding="utf-8")
        return {"train": splits.count("train"), "val": splits.count("val")}


def output_names(images: list[tuple[DatasetInfo, ImageInfo]], prefix: bool) -> list[str]:
    """The output name of each image, clashes renamed (and reported)."""
    wanted = [pascal.output_name(info.name, ds.name, prefix) for ds, info in images]
    names = pascal.unique_names(wanted)
    for (ds, info), want, name in zip(images, wanted, names, strict=True):
        if name != want:
            print(f"warning: {ds.name}/{info.name} is written as {name!r}: {want!r} is taken")
    return names


def pack(top: Path, tar_path: Path) -> None:
    """A plain tar of the folder ``top``, its one top folder, sorted, owner-less."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(tar_path, "w") as tar:
        tar.add(top, arcname=top.name, filter=clean)  # a folder's entries are added sorted


def run(session: ay.AppSession) -> None:
    api = session.api
    options = Options.from_state(session.state)
    project, only = resolve_target(api, session)
    meta = ProjectMeta.model_validate(api.project.get_meta(project.id))
    if len(meta.classes) > pascal.MAX_INDEX:
        raise BadInput(
            f"project {project.name!r} has {len(meta.classes)} classes; "
            f"Pascal VOC masks hold at most {pascal.MAX_INDEX}"
        )
    datasets = [only] if only is not None else api.dataset.get_list(project.id)
    images = [(ds, info) for ds in datasets for info in api.image.get_list(ds.id)]
    names = output_names(images, options.prefix)
    total = len(images)
    what = f"dataset {only.name!r} of project" if only is not None else "project"
    print(f"exporting {what} {project.name!r} (id {project.id}): {total} images, {options}")
    team_id = project.team_id
    base = f"{project.id}_{pascal.fit_bytes(project.name)}_pascal_voc"
    with tempfile.TemporaryDirectory(prefix="pascal-voc-") as tmp:
        top = Path(tmp) / base
        exporter = Exporter(api, project, meta, options, top / VOC_DIR)
        with session.progress_bar(total=total, message="exporting images") as bar:
            for start in range(0, total, BATCH):
                chunk = images[start : start + BATCH]
                chunk_names = names[start : start + BATCH]
                anns = api.annotation.download_jsons([info.id for _, info in chunk])
                for (ds, info), name, ann in zip(chunk, chunk_names, anns, strict=True):
                    exporter.image(name, ds, info, ann)
                    bar.update(1)
        counts = exporter.finish()
        tar_name = f"{base}.tar"
        tar_path = Path(tmp) / tar_name
        pack(top, tar_path)
        remote = f"/tmp/{APP_NAME}/export/{session.task_id}/{tar_name}"
        api.file.upload(team_id, str(tar_path), remote)
        size = tar_path.stat().st_size
    session.set_output_file("archive", remote)
    print(
        f"exported {total} images ({exporter.out.objects} objects; train {counts['train']}, "
        f"val {counts['val']}) to {remote} ({size} bytes)"
    )


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough; cleanup goes on
    raise Stopped


def main() -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        session = ay.AppSession.from_env()
        run(session)
    except Stopped:
        print("stopped: the export was asked to stop", flush=True)
        return 0
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except AppyardError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

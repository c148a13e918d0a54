"""Import images: a new images project from a team-files folder (layout in README.md).

Every image under the folder is imported; the folder it sits in (relative to the import folder)
names its dataset; ``<image>.json`` next to it is its annotation in appyard's format;
``meta.json`` at the top gives the project meta (else it is inferred from the annotations).

Everything that can be checked before anything is made is checked first (each annotation's
JSON, structure, classes, tags and geometry against its declared size); a problem ends the app
with an error naming the file. A problem found later (an image whose real size differs from its
annotation's, a file that is no image) also names the file, and the partly made project is
removed, so nothing half-imported stays. So is it when the app is stopped.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

import appyard as ay
from appyard.errors import AppyardError, BadRequestError, NotFoundError
from appyard.schemas.annotation import (
    SHAPES,
    Annotation,
    AnnotationProblem,
    ProjectMeta,
    check_annotation,
)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
META_FILE = "meta.json"
#: images downloaded, checked and uploaded per round (their annotations go in one batch)
CHUNK = 100
#: a dataset of a nested folder is named by its relative path, parts joined by this
NESTED_SEPARATOR = "__"


class ImportFailed(Exception):
    """The import cannot go on; the message names the file and the problem."""


@dataclass
class Item:
    """One image to import."""

    path: str  # team-files path of the image
    rel: PurePosixPath  # relative to the import folder
    ann_path: str | None = None
    ann: Annotation | None = None

    @property
    def dataset_key(self) -> tuple[str, ...]:
        return self.rel.parent.parts


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit("asked to stop")


def option(state: dict[str, Any], key: str) -> str:
    value = state.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImportFailed(f"option {key} must be a text, not {value!r}")
    return value.strip()


def field_of(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a field path: ``objects[2].geometry.exterior[5]``."""
    out = ""
    previous: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif previous == "geometry" and part in SHAPES:
            pass  # the discriminator's branch, not a field
        else:
            out += f".{part}" if out else str(part)
        previous = part
    return out or "(the whole file)"


def validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"{field_of(tuple(first['loc']))}: {first['msg']}{more}"


def read_json(api: ay.Api, team_id: int, path: str, tmp: Path) -> Any:
    local = tmp / "download.json"
    api.file.download(team_id, path, str(local))
    try:
        return json.loads(local.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ImportFailed(f"{path}: is not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ImportFailed(
            f"{path}: is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    finally:
        local.unlink(missing_ok=True)


def scan(api: ay.Api, team_id: int, root: PurePosixPath) -> tuple[list[Item], str | None, int]:
    """The images under ``root`` with their annotation files, the meta file, how many ignored."""
    try:
        entries = api.file.list(team_id, str(root), recursive=True)
    except NotFoundError:
        raise ImportFailed(f"{root}: no such folder in the team's files") from None
    files = {PurePosixPath(e.path): e for e in entries if not e.is_dir}
    items: list[Item] = []
    meta_path: str | None = None
    used: set[PurePosixPath] = set()
    for path in sorted(files):
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            ann = path.with_name(path.name + ".json")
            item = Item(str(path), path.relative_to(root))
            if ann in files:
                item.ann_path = str(ann)
                used.add(ann)
            items.append(item)
            used.add(path)
    if root / META_FILE in files:
        meta_path = str(root / META_FILE)
        used.add(root / META_FILE)
    return items, meta_path, len(files) - len(used)


def parse_annotations(api: ay.Api, team_id: int, items: list[Item], tmp: Path) -> None:
    for item in items:
        if item.ann_path is None:
            continue
        data = read_json(api, team_id, item.ann_path, tmp)
        try:
            item.ann = Annotation.model_validate(data)
        except ValidationError as exc:
            raise ImportFailed(f"{item.ann_path}: {validation_message(exc)}") from None


def infer_meta(items: list[Item]) -> ProjectMeta:
    """Classes (shape from the geometry) and tags in the order they first appear."""
    shapes: dict[str, tuple[str, str]] = {}  # class -> (shape, where first seen)
    tags: dict[str, None] = {}
    for item in items:
        if item.ann is None:
            continue
        tags.update(dict.fromkeys(item.ann.tags))
        for n, obj in enumerate(item.ann.objects):
            tags.update(dict.fromkeys(obj.tags))
            shape = obj.geometry.type
            seen = shapes.setdefault(obj.class_, (shape, item.ann_path or item.path))
            if seen[0] != shape:
                raise ImportFailed(
                    f"{item.ann_path}: objects[{n}] of class {obj.class_!r} is a {shape}, but "
                    f"in {seen[1]} the class is a {seen[0]}; a class has one shape "
                    f"(or give the classes in {META_FILE})"
                )
    return ProjectMeta.model_validate(
        {
            "classes": [{"name": c, "shape": s} for c, (s, _) in shapes.items()],
            "tags": [{"name": t} for t in tags],
        }
    )


def check_all(items: list[Item], meta: ProjectMeta) -> None:
    """Each annotation against the meta and its own declared size (the real size comes later)."""
    for item in items:
        if item.ann is None:
            continue
        size = item.ann.size
        try:
            check_annotation(item.ann, meta, size.width, size.height)
        except AnnotationProblem as exc:
            raise ImportFailed(f"{item.ann_path}: {exc.field}: {exc.message}") from None


def dataset_names(items: list[Item], root_name: str) -> dict[tuple[str, ...], str]:
    names: dict[tuple[str, ...], str] = {}
    for item in items:
        key = item.dataset_key
        if key not in names:
            names[key] = NESTED_SEPARATOR.join(key) if key else root_name
    return names


def image_size(local: Path, path: str) -> tuple[int, int]:
    try:
        with Image.open(local) as img:
            return img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ImportFailed(f"{path}: is not an image Pillow can open ({exc})") from None


def upload_chunk(
    api: ay.Api, team_id: int, dataset_id: int, chunk: list[Item], tmp: Path, bar: Any
) -> int:
    """Download, check, upload the images of ``chunk`` and then their annotations."""
    ids: list[int] = []
    anns: list[dict[str, Any]] = []
    owners: list[Item] = []
    for n, item in enumerate(chunk):
        local = tmp / f"{n}{PurePosixPath(item.path).suffix}"
        api.file.download(team_id, item.path, str(local))
        width, height = image_size(local, item.path)
        if item.ann is not None and (item.ann.size.width, item.ann.size.height) != (width, height):
            raise ImportFailed(
                f"{item.ann_path}: size: says {item.ann.size.width}x{item.ann.size.height} "
                f"but the image {item.path} is {width}x{height}"
            )
        try:
            info = api.image.upload_path(dataset_id, item.rel.name, local)
        except BadRequestError as exc:
            raise ImportFailed(f"{item.path}: the server refused it: {exc}") from None
        finally:
            local.unlink(missing_ok=True)
        if item.ann is not None:
            ids.append(info.id)
            anns.append(item.ann.to_json())
            owners.append(item)
        bar.update(1)
    if ids:
        try:
            api.annotation.upload_jsons(ids, anns)
        except BadRequestError as exc:
            match = re.match(r"items\[(\d+)\]", exc.field or "")
            if match is None:
                raise
            owner = owners[int(match.group(1))]
            raise ImportFailed(f"{owner.ann_path}: the server refused it: {exc}") from None
    return len(ids)


def run(session: ay.AppSession) -> None:
    api = session.api
    target = session.target
    if target.name != "files_folder":
        raise ImportFailed(
            "start this app on a folder of team files (the state key 'folder'), "
            f"not from {target.name}"
        )
    root = PurePosixPath("/" + str(target.value).strip("/"))
    project_name = option(session.state, "projectName") or root.name or "Imported images"
    root_dataset = option(session.state, "datasetName") or root.name or "images"
    team_id = ay.env.team_id()
    workspace_id = ay.env.workspace_id()

    with tempfile.TemporaryDirectory(prefix="import-images-") as tmp_dir:
        tmp = Path(tmp_dir)
        items, meta_path, ignored = scan(api, team_id, root)
        if not items:
            raise ImportFailed(
                f"{root}: no images in the folder or below it (looked for "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        print(
            f"{root}: {len(items)} images, {sum(i.ann_path is not None for i in items)} "
            f"annotations, {'a' if meta_path else 'no'} {META_FILE}, {ignored} other files ignored"
        )
        parse_annotations(api, team_id, items, tmp)
        if meta_path is not None:
            try:
                meta = ProjectMeta.model_validate(read_json(api, team_id, meta_path, tmp))
            except ValidationError as exc:
                raise ImportFailed(f"{meta_path}: {validation_message(exc)}") from None
        else:
            meta = infer_meta(items)
        check_all(items, meta)
        datasets = dataset_names(items, root_dataset)

        project = api.project.create(workspace_id, project_name, change_name_if_conflict=True)
        print(f"project {project.name!r} (id {project.id}) in workspace {workspace_id}")
        with api.project.removed_on_failure(project.id):
            api.project.update_meta(project.id, meta)
            annotated = 0
            dataset_ids: list[int] = []
            with session.progress_bar(total=len(items), message="importing images") as bar:
                for key, name in datasets.items():
                    mine = [i for i in items if i.dataset_key == key]
                    dataset = api.dataset.create(project.id, name, change_name_if_conflict=True)
                    dataset_ids.append(dataset.id)
                    for start in range(0, len(mine), CHUNK):
                        chunk = mine[start : start + CHUNK]
                        annotated += upload_chunk(api, team_id, dataset.id, chunk, tmp, bar)
                    print(f"dataset {dataset.name!r} (id {dataset.id}): {len(mine)} images")
    session.set_outputs({"project_id": project.id, "dataset_ids": dataset_ids})
    print(
        f"done: project {project.name!r} (id {project.id}): {len(datasets)} datasets, "
        f"{len(items)} images, {annotated} annotations, {len(meta.classes)} classes, "
        f"{len(meta.tags)} tags"
    )


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    session = ay.AppSession.from_env()
    try:
        run(session)
    except ImportFailed as exc:
        print(f"import failed: {exc}", file=sys.stderr)
        return 1
    except AppyardError as exc:
        print(f"import failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The pipeline of the issue that asked for pipelines, as a user writes it, and the real
manifests of the ecosystem's apps it runs (the catalog of the checks' tests)."""

from __future__ import annotations

import json
from pathlib import Path

from appyard.schemas.manifest import Manifest
from appyard.schemas.pipeline_check import AppMissing

ECOSYSTEM = Path(__file__).resolve().parents[2] / "src" / "appyard" / "ecosystem"

EXAMPLE_YAML = """\
name: import-and-export
inputs:
  folder: {default: /incoming/cats}
  coef: {default: 0.8}
steps:
  - id: import
    app: appyard/import-images
    target: {files_folder: "${inputs.folder}"}
    params: {projectName: cats}
  - id: export
    app: appyard/export-to-pascal-voc
    needs: [import]
    target: {images_project: "${steps.import.outputs.project_id}"}
    params: {trainSplitCoef: "${inputs.coef}"}
    retries: {limit: 2, backoff_s: 5}
    timeout_s: 600
  - id: per-dataset
    app: appyard/export-to-pascal-voc
    needs: [import]
    for_each: "${steps.import.outputs.dataset_ids}"
    target: {images_dataset: "${item}"}
    max_parallel: 4
"""


def ecosystem_manifest(folder: str) -> Manifest:
    """The manifest of a bundled app, read from its config.json."""
    return Manifest.parse(json.loads((ECOSYSTEM / folder / "config.json").read_text()))


class DictCatalog:
    """A catalog of real manifests by slug and version (None: the newest, the last given)."""

    def __init__(self) -> None:
        self.versions: dict[str, dict[str, Manifest]] = {}
        self.lookups: list[tuple[str, str | None]] = []

    def add(self, manifest: Manifest, version: str = "r1") -> DictCatalog:
        self.versions.setdefault(manifest.slug, {})[version] = manifest
        return self

    def manifest(self, slug: str, version: str | None) -> Manifest | AppMissing:
        self.lookups.append((slug, version))
        releases = self.versions.get(slug)
        if not releases:
            return AppMissing(f"there is no app {slug!r} in the catalog")
        if version is None:
            return list(releases.values())[-1]
        if version not in releases:
            return AppMissing(
                f"app {slug} has no version {version!r} (its versions: {sorted(releases)})",
                at="version",
            )
        return releases[version]


def ecosystem_catalog() -> DictCatalog:
    catalog = DictCatalog()
    for folder in ("import-images", "export-to-pascal-voc", "hello"):
        catalog.add(ecosystem_manifest(folder))
    return catalog

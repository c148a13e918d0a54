"""A Python builder of pipeline documents: the same document a YAML file holds.

::

    from appyard.sdk.pipeline import Pipeline, inputs, outputs, item

    p = (
        Pipeline("import-and-export")
        .input("folder", default="/incoming/cats")
        .step("import", app="appyard/import-images",
              target={"files_folder": inputs("folder")}, params={"projectName": "cats"})
        .step("export", app="appyard/export-to-pascal-voc", needs=["import"],
              target={"images_project": outputs("import", "project_id")})
    )
    p.to_dict()   # the document; p.to_yaml() / p.to_json() as text; p.check() its problems

The builder writes only what it is given, so ``to_dict()`` equals the document a user would
write by hand, and the server reads both the same way. The document's rules are not repeated
here: :meth:`Pipeline.check` and :meth:`Pipeline.build` apply the same model and checks the
server applies at submit (without the catalog, which only the server has).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from appyard.domain.pipeline import Problem
from appyard.errors import InvalidArgumentsError
from appyard.schemas.pipeline import PipelineDoc, dump_yaml, parse_problems
from appyard.schemas.pipeline_check import check_pipeline, validate_pipeline

WhenRule = Literal["all_success", "all_done", "any_failed"]


def _path(words: Sequence[str | int]) -> str:
    return "".join(f".{w}" for w in words)


def inputs(name: str, *path: str | int) -> str:
    """``${inputs.NAME}``: an input of the run (keys after it go into its value)."""
    return f"${{inputs.{name}{_path(path)}}}"


def outputs(step: str, key: str, *path: str | int) -> str:
    """``${steps.STEP.outputs.KEY}``: an output of a step this one needs."""
    return f"${{steps.{step}.outputs.{key}{_path(path)}}}"


def task_id(step: str) -> str:
    """``${steps.STEP.task_id}``: the task id of a step this one needs."""
    return f"${{steps.{step}.task_id}}"


def item(*path: str | int) -> str:
    """``${item}``: the item a ``for_each`` step runs for."""
    return f"${{item{_path(path)}}}"


_NO_DEFAULT: Any = object()


class Pipeline:
    """A pipeline document built step by step; each method returns the builder."""

    def __init__(self, name: str, *, description: str | None = None) -> None:
        self._doc: dict[str, Any] = {"name": name}
        if description is not None:
            self._doc["description"] = description

    def input(
        self, name: str, *, default: Any = _NO_DEFAULT, description: str | None = None
    ) -> Pipeline:
        """Declare an input; without ``default`` every run must give it."""
        declared: dict[str, Any] = self._doc.setdefault("inputs", {})
        if name in declared:
            raise InvalidArgumentsError(f"input {name!r} is declared twice")
        spec: dict[str, Any] = {}
        if default is not _NO_DEFAULT:
            spec["default"] = copy.deepcopy(default)
        if description is not None:
            spec["description"] = description
        declared[name] = spec
        return self

    def step(
        self,
        id: str,
        *,
        app: str,
        version: str | None = None,
        params: Mapping[str, Any] | None = None,
        target: Mapping[str, Any] | None = None,
        agent: int | Literal["any"] | None = None,
        needs: str | Sequence[str] | None = None,
        when: WhenRule | None = None,
        retries: int | Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        continue_on_failure: bool | None = None,
        for_each: str | Sequence[Any] | None = None,
        max_parallel: int | None = None,
    ) -> Pipeline:
        """Add a step (see ``docs/pipelines.md`` for each key). ``needs`` may be one id;
        ``retries`` a number of retries or ``{limit, backoff_s, retry_on}``. Keys left None
        are left out of the document (the defaults apply)."""
        steps: list[dict[str, Any]] = self._doc.setdefault("steps", [])
        if any(s.get("id") == id for s in steps):
            raise InvalidArgumentsError(f"step id {id!r} is used twice; give each step its own")
        step: dict[str, Any] = {"id": id, "app": app}
        if isinstance(needs, str):
            needs = [needs]
        if isinstance(retries, int):  # true is refused by the model, as written
            retries = {"limit": retries}
        if for_each is not None and not isinstance(for_each, str):
            for_each = list(for_each)
        given: dict[str, Any] = {
            "version": version,
            "needs": None if needs is None else list(needs),
            "when": when,
            "for_each": for_each,
            "target": None if target is None else dict(target),
            "params": None if params is None else dict(params),
            "agent": agent,
            "retries": None if retries is None else dict(retries),
            "timeout_s": timeout_s,
            "continue_on_failure": continue_on_failure,
            "max_parallel": max_parallel,
        }
        step.update({k: copy.deepcopy(v) for k, v in given.items() if v is not None})
        steps.append(step)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The document (a fresh copy)."""
        return copy.deepcopy(self._doc)

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self._doc, indent=indent, ensure_ascii=False)

    def check(self, *, inputs: Mapping[str, Any] | None = None) -> list[Problem]:
        """Every problem the server would find at submit, but the catalog's (an unknown app,
        params that do not fit its manifest): an empty list when there is none."""
        doc, problems = parse_problems(self.to_dict())
        if doc is None:
            return problems
        return check_pipeline(doc, inputs=inputs)

    def build(self, *, inputs: Mapping[str, Any] | None = None) -> PipelineDoc:
        """The parsed document; ``BadRequestError`` lists every problem :meth:`check` finds."""
        return validate_pipeline(self.to_dict(), inputs=inputs)


__all__ = ["Pipeline", "PipelineDoc", "inputs", "item", "outputs", "task_id"]

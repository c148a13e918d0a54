"""The SDK's builder writes the document a user writes by hand."""

from __future__ import annotations

import json

import pytest

from appyard.errors import BadRequestError, InvalidArgumentsError
from appyard.schemas.pipeline import PipelineDoc, load_document
from appyard.sdk.pipeline import Pipeline, inputs, item, outputs, task_id
from tests.pipelines.example import EXAMPLE_YAML


def example_builder() -> Pipeline:
    return (
        Pipeline("import-and-export")
        .input("folder", default="/incoming/cats")
        .input("coef", default=0.8)
        .step(
            "import",
            app="appyard/import-images",
            target={"files_folder": inputs("folder")},
            params={"projectName": "cats"},
        )
        .step(
            "export",
            app="appyard/export-to-pascal-voc",
            needs=["import"],
            target={"images_project": outputs("import", "project_id")},
            params={"trainSplitCoef": inputs("coef")},
            retries={"limit": 2, "backoff_s": 5},
            timeout_s=600,
        )
        .step(
            "per-dataset",
            app="appyard/export-to-pascal-voc",
            needs="import",
            for_each=outputs("import", "dataset_ids"),
            target={"images_dataset": item()},
            max_parallel=4,
        )
    )


def test_the_builder_makes_the_example_document() -> None:
    p = example_builder()
    assert p.to_dict() == load_document(EXAMPLE_YAML)
    assert load_document(p.to_yaml()) == load_document(EXAMPLE_YAML)
    assert json.loads(p.to_json()) == load_document(EXAMPLE_YAML)
    assert p.check() == []
    assert p.build() == PipelineDoc.parse(EXAMPLE_YAML)


def test_expression_helpers() -> None:
    assert inputs("cfg", "n", 0) == "${inputs.cfg.n.0}"
    assert outputs("s", "k") == "${steps.s.outputs.k}"
    assert task_id("s") == "${steps.s.task_id}"
    assert item() == "${item}" and item("id") == "${item.id}"


def test_the_builder_keeps_what_it_is_given_apart() -> None:
    params = {"n": [1]}
    p = Pipeline("p").input("x").step("s", app="a/b", params=params, retries=3, agent=7)
    params["n"].append(2)
    doc = p.to_dict()
    assert doc == {
        "name": "p",
        "inputs": {"x": {}},
        "steps": [
            {"id": "s", "app": "a/b", "params": {"n": [1]}, "agent": 7, "retries": {"limit": 3}}
        ],
    }
    doc["steps"].clear()
    assert p.to_dict()["steps"]


def test_builder_mistakes() -> None:
    p = Pipeline("p").input("x").step("s", app="a/b")
    with pytest.raises(InvalidArgumentsError, match="step id 's' is used twice"):
        p.step("s", app="a/b")
    with pytest.raises(InvalidArgumentsError, match="input 'x' is declared twice"):
        p.input("x")
    p.step("t", app="a/b", needs="ghost", when="any_failed", params={"v": inputs("y")})
    assert [str(e) for e in p.check(inputs={})] == [
        "steps[1].needs[0]: there is no step 'ghost' (the steps: ['s', 't'])",
        "steps[1].params.v: ${inputs.y} reads input 'y', which the pipeline has not (its "
        "inputs: ['x'])",
        "inputs.x: has no default; the run must give it",
    ]
    with pytest.raises(BadRequestError) as e:
        p.build()
    assert e.value.field == "steps[1].needs[0]"
    bad = Pipeline("p").step("s", app="a/b", timeout_s=-1)
    assert [str(e) for e in bad.check()] == [
        "steps[0].timeout_s: must be a number of seconds above 0, at most 2.592e+06"
    ]

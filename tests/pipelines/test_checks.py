"""Submit-time checks: every problem with where it is; the catalog through its seam, with
the real manifests of the ecosystem's apps."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from appyard.domain.expressions import ExpressionError, Scope, StepResult
from appyard.errors import BadRequestError
from appyard.schemas.manifest import Manifest
from appyard.schemas.pipeline import PipelineDoc, load_document
from appyard.schemas.pipeline_check import (
    AppMissing,
    catalog_of,
    check_pipeline,
    state_problems,
    step_items,
    step_start_state,
    step_state,
    validate_pipeline,
)
from appyard.server.services.manifest import validate_state
from tests.pipelines.example import EXAMPLE_YAML, ecosystem_catalog, ecosystem_manifest


def example() -> dict[str, Any]:
    raw = load_document(EXAMPLE_YAML)
    assert isinstance(raw, dict)
    return raw


def found(raw: dict[str, Any], **kw: Any) -> list[str]:
    return [str(p) for p in check_pipeline(PipelineDoc.parse(raw), **kw)]


def test_the_example_has_no_problem() -> None:
    catalog = ecosystem_catalog()
    assert found(example(), catalog=catalog) == []
    # each app is looked up once, however many steps run it
    assert sorted(catalog.lookups) == [
        ("appyard/export-to-pascal-voc", None),
        ("appyard/import-images", None),
    ]
    assert found(example(), inputs={}, catalog=catalog) == []
    assert found(example(), inputs={"folder": "/other", "coef": 0.5}, catalog=catalog) == []


def test_graph_problems() -> None:
    raw = example()
    raw["steps"].append({"id": "export", "app": "appyard/hello"})
    raw["steps"][1]["needs"] = ["import", "nope", "export", "import"]
    assert found(raw) == [
        "steps[3].id: 'export' is the id of steps[1] too",
        "steps[1].needs[1]: there is no step 'nope' (the steps: ['export', 'import', "
        "'per-dataset'])",
        "steps[1].needs[2]: step 'export' cannot need itself",
        "steps[1].needs[3]: 'import' is listed twice",
    ]


def test_a_cycle_is_named_with_its_steps() -> None:
    raw = example()
    raw["steps"][0]["needs"] = ["per-dataset"]
    assert found(raw) == [
        "steps[0].needs: the needs go round: import -> per-dataset -> import",
    ]


def test_expression_problems() -> None:
    raw = example()
    raw["steps"].append(
        {
            "id": "late",
            "app": "appyard/hello",
            "needs": ["export"],
            "params": {
                "name": "${inputs.nope}",
                "count": "${steps.per-dataset.outputs.n}",  # a sibling, not an ancestor
                "style": "${steps.late.outputs.x}",
                "delay_s": "${steps.ghost.task_id}",
                "ok": "${steps.import.task_id} ${steps.export.outputs.tar}",  # via export
                "item": "${item}",
                "bad": ["${inputs}", "${steps.import.outputs.a", "${inputs.folder.x.y}"],
            },
            "max_parallel": 2,
        }
    )
    raw["steps"][2]["for_each"] = "${item.list}"
    got = found(raw)
    assert got == [
        "steps[2].for_each: ${item.list} cannot be used in for_each itself: it is each item of it",
        "steps[3].params.name: ${inputs.nope} reads input 'nope', which the pipeline has not "
        "(its inputs: ['coef', 'folder'])",
        "steps[3].params.count: ${steps.per-dataset.outputs.n} reads step 'per-dataset', which "
        "step 'late' does not need (directly or through another step): add 'per-dataset' to "
        "its needs",
        "steps[3].params.style: ${steps.late.outputs.x}: a step cannot read its own outputs",
        "steps[3].params.delay_s: ${steps.ghost.task_id} reads step 'ghost', which is not a "
        "step of the pipeline (the steps: ['export', 'import', 'late', 'per-dataset'])",
        "steps[3].params.item: ${item} is only known in a step with for_each",
        "steps[3].params.bad[0]: ${inputs} names no input; write ${inputs.NAME}",
        "steps[3].params.bad[1]: '${steps.import.outputs.a' opens an expression that is not "
        "closed with '}' (write $${ for a literal ${)",
        "steps[3].max_parallel: is for a step with for_each; add for_each",
    ]


def test_for_each_must_give_a_list() -> None:
    raw = example()
    raw["steps"][2]["for_each"] = "ids: ${steps.import.outputs.dataset_ids}"
    assert found(raw) == [
        "steps[2].for_each: must be a list, or one expression that gives a list (like "
        "${steps.S.outputs.K}) and nothing else"
    ]
    raw["steps"][2]["for_each"] = "${inputs.folder}"  # known now: a string
    assert found(raw) == ["steps[2].for_each: must give a list; it gives string"]
    raw["steps"][2]["for_each"] = "${inputs.folder}"
    assert found(raw, inputs={"folder": [1, 2]}) == []
    raw["steps"][2]["for_each"] = [1, "${inputs.coef}"]  # a literal list of values
    assert found(raw) == []


def test_an_input_read_past_its_value_is_named_at_submit() -> None:
    raw = example()
    raw["steps"][0]["params"]["projectName"] = "${inputs.folder.name}"
    assert found(raw) == [
        "steps[0].params.projectName: ${inputs.folder.name}: inputs.folder is "
        '"/incoming/cats", not an object or array'
    ]


def test_inputs_of_a_run() -> None:
    raw = example()
    raw["inputs"]["team_name"] = {"description": "no default"}
    assert found(raw) == []  # only checked, or saved: no values asked for
    assert found(raw, inputs={"folder": "/x", "extra": 1, "coef": float("nan")}) == [
        "inputs.extra: is not an input of the pipeline (its inputs: ['coef', 'folder', "
        "'team_name'])",
        "inputs.coef: is nan, which JSON has no place for",
        "inputs.team_name: has no default; the run must give it",
    ]


def test_catalog_unknown_app_and_version() -> None:
    raw = example()
    raw["steps"][0]["app"] = "someone/missing"
    raw["steps"][1]["version"] = "9.9"
    raw["steps"][2]["version"] = "r1"
    assert found(raw, catalog=ecosystem_catalog()) == [
        "steps[0].app: there is no app 'someone/missing' in the catalog",
        "steps[1].version: app appyard/export-to-pascal-voc has no version '9.9' (its "
        "versions: ['r1'])",
    ]


def test_catalog_params_and_targets_against_the_manifest() -> None:
    raw = example()
    raw["inputs"]["coef"] = {"default": "most"}  # known at submit: a string, not a number
    raw["steps"][0]["params"]["datasetName"] = 5
    raw["steps"][1]["params"]["addPrefixToImages"] = "${steps.import.outputs.flag}"  # unknown
    raw["steps"][1]["params"]["pascalContourThickness"] = "px-${steps.import.task_id}"  # text
    raw["steps"][2]["target"] = {"files_folder": "${item}"}  # not a target of the app
    raw["steps"].append({"id": "hi", "app": "appyard/hello", "params": {"style": "loud"}})
    raw["steps"].append({"id": "no-target", "app": "appyard/export-to-pascal-voc", "params": {}})
    raw["steps"].append(
        {
            "id": "folder-as-id",
            "app": "appyard/export-to-pascal-voc",
            "needs": ["import"],
            "target": {"images_project": "p-${steps.import.outputs.project_id}"},
        }
    )
    got = found(raw, catalog=ecosystem_catalog())
    assert got == [
        "steps[0].params.datasetName: must be a JSON string (the manifest's default is ''); "
        "got number 5",
        "steps[1].params.pascalContourThickness: must be a JSON number (the manifest's default "
        "is 3); got text",
        "steps[1].params.trainSplitCoef: must be a JSON number (the manifest's default is 0.8); "
        "got string 'most'",
        "steps[2].target.files_folder: app appyard/export-to-pascal-voc is not started from "
        "files_folder; its targets: ['images_project', 'images_dataset']",
        "steps[2].target: needs a target: this app is started from ['images_project', "
        "'images_dataset']; pass one of: projectId (images_project), datasetId "
        "(images_dataset)",
        "steps[3].params.style: must be one of ['plain', 'shout', 'whisper'] (the manifest's "
        "choices); got 'loud'",
        "steps[4].params: needs a target: this app is started from ['images_project', "
        "'images_dataset']; pass one of: projectId (images_project), datasetId "
        "(images_dataset)",
        "steps[5].target.images_project: must be of type int (target images_project); got text",
    ]
    # the same input given right at run time: no problem left with it
    assert not any(
        "trainSplitCoef" in p for p in found(raw, inputs={"coef": 0.7}, catalog=ecosystem_catalog())
    )


def test_two_targets_and_a_versioned_catalog() -> None:
    manifest = ecosystem_manifest("export-to-pascal-voc")
    older = Manifest.parse(
        {
            "name": "Export, an older release",
            "slug": manifest.slug,
            "main_script": "main.py",
            "modal_template_state": {"only": 1},
            "context_menu": {"target": ["images_project", "images_dataset"]},
        }
    )
    raw = {
        "name": "two",
        "steps": [
            {
                "id": "s",
                "app": "appyard/export-to-pascal-voc",
                "version": "old",
                "params": {"projectId": 3, "only": "x"},
                "target": {"images_dataset": 4},
            }
        ],
    }
    catalog = catalog_of(
        lambda slug, version: (
            older if (slug, version) == (manifest.slug, "old") else AppMissing("none")
        )
    )
    assert found(raw, catalog=catalog) == [
        "steps[0].params.only: must be a JSON number (the manifest's default is 1); got string 'x'",
        "steps[0].target: has more than one target (['projectId', 'datasetId']); pass only one",
    ]


def test_validate_raises_one_422_with_every_problem() -> None:
    raw = example()
    raw["steps"][1]["needs"] = ["ghost"]
    with pytest.raises(BadRequestError) as e:
        validate_pipeline(raw, inputs={"zz": 1}, catalog=ecosystem_catalog())
    err = e.value
    assert err.status_code == 422 and err.field == "steps[1].needs[0]"
    assert [p["at"] for p in err.details["problems"]] == [
        "steps[1].needs[0]",
        "steps[1].target.images_project",
        "inputs.zz",
    ]
    assert validate_pipeline(EXAMPLE_YAML, catalog=ecosystem_catalog()).name == "import-and-export"


def test_step_state_puts_the_target_under_its_key() -> None:
    assert step_state({"a": 1}, {"images_project": 7}) == {"a": 1, "projectId": 7}
    assert step_state({}, {"files_folder": "/x"}) == {"folder": "/x"}
    assert step_state({"a": 1}, {"ecosystem": None}) == {"a": 1}
    assert step_state({"a": 1}, None) == {"a": 1}


STATES: list[tuple[str, dict[str, Any]]] = [
    ("export-to-pascal-voc", {"projectId": 1}),
    ("export-to-pascal-voc", {"datasetId": 2.0, "trainSplitCoef": 1}),
    ("export-to-pascal-voc", {"projectId": "1"}),
    ("export-to-pascal-voc", {"projectId": True}),
    ("export-to-pascal-voc", {}),
    ("export-to-pascal-voc", {"projectId": 1, "datasetId": 2}),
    ("export-to-pascal-voc", {"projectId": 1, "addPrefixToImages": 1}),
    ("export-to-pascal-voc", {"projectId": 1, "pascalContourThickness": None}),
    ("import-images", {"folder": "/a"}),
    ("import-images", {"folder": 3}),
    ("import-images", {"projectName": "x"}),
    ("hello", {}),
    ("hello", {"style": "shout", "count": 2}),
    ("hello", {"style": "loud"}),
    ("hello", {"style": 3}),
    ("hello", {"extra": {"free": True}}),
]


@pytest.mark.parametrize(("app", "state"), STATES)
def test_the_state_check_refuses_what_start_refuses(app: str, state: dict[str, Any]) -> None:
    """A known state is judged as the server's start judges it: the same first field."""
    manifest = ecosystem_manifest(app)
    mine = state_problems(manifest, copy.deepcopy(state))
    try:
        validate_state(manifest, copy.deepcopy(state))
        start_field = None
    except BadRequestError as e:
        start_field = e.field
    ours = None
    if mine:
        key = mine[0][0]
        ours = "params.state" if key is None else f"params.state.{key}"
    assert ours == start_field


def test_a_step_resolved_when_it_starts() -> None:
    doc = PipelineDoc.parse(EXAMPLE_YAML)
    done = Scope(
        inputs=doc.defaults(),
        steps={"import": StepResult({"project_id": 7, "dataset_ids": [3, 4]}, task_id=1)},
    )
    assert step_start_state(doc, "import", Scope(inputs=doc.defaults())) == {
        "projectName": "cats",
        "folder": "/incoming/cats",
    }
    assert step_start_state(doc, "export", done) == {"trainSplitCoef": 0.8, "projectId": 7}
    assert step_items(doc, "export", done) is None
    items = step_items(doc, "per-dataset", done)
    assert items == [3, 4]
    assert [step_start_state(doc, "per-dataset", done.with_item(x)) for x in items] == [
        {"datasetId": 3},
        {"datasetId": 4},
    ]


def test_a_missing_output_at_start_names_the_expression() -> None:
    doc = PipelineDoc.parse(EXAMPLE_YAML)
    scope = Scope(inputs=doc.defaults(), steps={"import": StepResult({"project_id": 7}, 1)})
    with pytest.raises(ExpressionError) as e:
        step_items(doc, "per-dataset", scope)
    assert str(e.value) == (
        "steps[2].for_each: ${steps.import.outputs.dataset_ids}: step 'import' finished "
        "without setting output 'dataset_ids' (its outputs: ['project_id'])"
    )
    scope = Scope(steps={"import": StepResult({"dataset_ids": "3,4"}, 1)})
    with pytest.raises(ExpressionError, match="gives string, not a list"):
        step_items(doc, "per-dataset", scope)
    with pytest.raises(ExpressionError) as e:
        step_start_state(doc, "export", Scope(inputs=doc.defaults()))
    assert e.value.at == "steps[1].target.images_project"
    assert e.value.expression == "${steps.import.outputs.project_id}"


def test_long_lists_in_messages_are_cut() -> None:
    steps = [{"id": f"s{i:02}", "app": "appyard/hello"} for i in range(30)]
    steps[0]["needs"] = ["ghost"]
    [problem] = found({"name": "many", "steps": steps})
    assert problem.endswith("'s19', ... and 10 more])")

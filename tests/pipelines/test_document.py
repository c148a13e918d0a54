"""The document: YAML and JSON read the same, every problem of its shape named, caps held."""

from __future__ import annotations

import json

import pytest
import yaml

from appyard.domain.pipeline import Problem, RetryOn, When
from appyard.errors import BadRequestError
from appyard.schemas.pipeline import (
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENT_DEPTH,
    MAX_STEPS,
    PipelineDoc,
    dump_yaml,
    load_document,
    parse_problems,
)
from tests.pipelines.example import EXAMPLE_YAML


def problems(raw: object) -> list[str]:
    doc, found = parse_problems(raw)
    assert doc is None
    return [str(p) for p in found]


def step(**kw: object) -> dict[str, object]:
    return {"id": "s", "app": "appyard/hello", **kw}


def test_the_example_reads_into_the_model() -> None:
    doc = PipelineDoc.parse(EXAMPLE_YAML)
    assert doc.name == "import-and-export"
    assert doc.defaults() == {"folder": "/incoming/cats", "coef": 0.8}
    export = doc.step("export")
    assert export.needs == ["import"] and export.when is When.ALL_SUCCESS
    assert export.retries is not None and export.retries.limit == 2
    assert export.retries.backoff_s == 5 and export.retries.retry_on == [
        RetryOn.ERROR,
        RetryOn.TIMEOUT,
    ]
    assert export.timeout_s == 600 and export.agent == "any"
    fan = doc.step("per-dataset")
    assert fan.for_each == "${steps.import.outputs.dataset_ids}" and fan.max_parallel == 4
    assert doc.rules()["export"].needs == ("import",)


def test_yaml_and_json_are_the_same_document() -> None:
    raw = load_document(EXAMPLE_YAML)
    assert load_document(json.dumps(raw)) == raw
    assert load_document(json.dumps(raw).encode(), format="json") == raw
    assert load_document(dump_yaml(raw)) == raw
    assert PipelineDoc.parse(raw).to_document() == raw  # nothing added, nothing lost


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a: &x [1]\nb: *x\n", "anchors and aliases"),
        ("name: a\nname: b\n", "the key 'name' appears twice"),
        ('{"name": "a", "name": "b"}', "the key 'name' appears twice"),
        ('{"n": NaN}', "NaN is not JSON"),
        ("a: [1\n", "not valid YAML"),
        ("a: 1\n---\nb: 2\n", "not valid YAML"),
        ("!!python/object:os.system {}\n", "not valid YAML"),
        ("[" * (MAX_DOCUMENT_DEPTH + 1) + "]" * (MAX_DOCUMENT_DEPTH + 1), "nested deeper"),
        ('{"a":' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper"),
        (b"name: \xff\n", "not UTF-8"),
    ],
)
def test_what_cannot_be_read_is_refused_on_document(text: str | bytes, says: str) -> None:
    with pytest.raises(BadRequestError) as e:
        load_document(text)
    assert e.value.field == "document"
    assert says in str(e.value)


def test_a_billion_laughs_is_refused_before_it_grows() -> None:
    lines = ['a0: &a0 ["lol"]'] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)
    ]
    with pytest.raises(BadRequestError, match="anchors and aliases"):
        load_document("\n".join(lines))


def test_size_cap() -> None:
    big = "name: x\n# " + "x" * MAX_DOCUMENT_BYTES
    with pytest.raises(BadRequestError, match="limit is"):
        load_document(big)
    raw = {"name": "x", "description": "d", "steps": [step(params={"t": "x" * 200_000})] * 6}
    assert problems(raw) == [
        f"is {len(json.dumps(raw, separators=(',', ':')))} bytes of JSON; the limit is {MAX_DOCUMENT_BYTES} bytes"
    ]


def test_yaml_values_that_are_not_json_are_named() -> None:
    raw = load_document(
        "name: x\nsteps:\n- id: s\n  app: a/b\n  params: {when: 2024-01-02, big: .inf, 1: x}\n"
        "  retries: {limit: 1, on: [error]}\n"
    )
    assert problems(raw) == [
        "steps[0].params.when: is a date (2024-01-02); quote it to pass it as text",
        "steps[0].params.big: is inf, which JSON has no place for",
        "steps[0].params: has the key 1, which is not a string; quote it",
        "steps[0].retries: has the key True, which is not a string; quote it",
    ]


def test_every_shape_problem_is_named_at_once() -> None:
    raw = {
        "name": "has space",
        "inputs": {"ok": {"default": 1}, "bad name": {}, "x": {"deflt": 1}},
        "steps": [
            step(id="a.b", app="nope", needs="b", when="always", agent=0, timeout_s=0),
            step(
                retries={"limit": "2", "backoff_s": -1, "retry_on": ["error", "error"]},
                continue_on_failure="yes",
                max_parallel=0,
                target={"images_project": 1, "images_dataset": 2},
                version="",
                unknown=1,
            ),
            step(for_each=5, params=[1], target={"project": 3}),
            {"app": "a/b"},
        ],
    }
    got = problems(raw)
    assert got == [
        "name: must be 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit",
        "inputs.bad name: is not an input name: use 1 to 100 letters, digits, '_' or '-'",
        "steps[0].id: must be 1 to 100 letters, digits, '_' or '-'",
        'steps[0].app: must be an app\'s slug "owner/name" (at most 200 characters)',
        'steps[0].agent: must be an agent id (a whole number) or "any" (any online agent)',
        f"steps[0].needs: must be a list of step ids (at most {MAX_STEPS})",
        "steps[0].when: must be one of ['all_success', 'all_done', 'any_failed']",
        "steps[0].timeout_s: must be a number of seconds above 0, at most 2.592e+06",
        "steps[1].version: must be a version: a string of 1 to 100 characters",
        "steps[1].target: must be an object of one target, like {images_project: 7}; targets: "
        "['ecosystem', 'files_file', 'files_folder', 'images_dataset', 'images_project', "
        "'team', 'team_member']",
        "steps[1].retries.limit: must be a whole number of retries from 0 to 100",
        "steps[1].retries.backoff_s: must be a number of seconds from 0 to 86400",
        "steps[1].retries.retry_on: must be a non-empty list of distinct ends of an attempt: "
        "['error', 'timeout', 'stopped']",
        "steps[1].continue_on_failure: must be true or false",
        "steps[1].max_parallel: must be a whole number from 1 to 1000",
        "steps[1].unknown: is not a known key; use ['id', 'app', 'version', 'params', "
        "'target', 'agent', 'needs', 'when', 'retries', 'timeout_s', 'continue_on_failure', "
        "'for_each', 'max_parallel']",
        "steps[2].params: must be an object: option → value (over the app's defaults)",
        "steps[2].target.project: is not a target; use one of ['ecosystem', 'files_file', "
        "'files_folder', 'images_dataset', 'images_project', 'team', 'team_member']",
        "steps[2].for_each: must be a list of items, or one expression that gives a list",
        "steps[3].id: is required",
    ]


def test_input_problems_and_the_document_root() -> None:
    assert problems({"name": "x", "inputs": {"x": {"deflt": 1}}, "steps": [step()]}) == [
        "inputs.x.deflt: is not a known key; use ['default', 'description']"
    ]
    assert problems({"steps": [], "other": 1}) == [
        "name: is required",
        "steps: must be a non-empty list of steps",
        "other: is not a known key; use ['name', 'description', 'inputs', 'steps']",
    ]
    assert problems([1]) == ["a pipeline must be an object with name, inputs and steps"]
    assert problems({"name": "x", "steps": [step()] * (MAX_STEPS + 1)}) == [
        f"steps: has {MAX_STEPS + 1} steps; the limit is {MAX_STEPS}"
    ]


def test_params_caps() -> None:
    deep: object = 1
    for _ in range(34):
        deep = {"d": deep}
    assert problems({"name": "x", "steps": [step(params={"p": deep})]}) == [
        "steps[0].params: is nested deeper than 32 levels"
    ]
    assert problems({"name": "x", "steps": [step(params={"p": "\x00"})]}) == [
        "steps[0].params.p: has a NUL character, which no database stores"
    ]


def test_refusal_lists_every_problem() -> None:
    with pytest.raises(BadRequestError) as e:
        PipelineDoc.parse({"name": "x", "steps": [step(when="never", agent="me")]})
    err = e.value
    assert err.status_code == 422
    assert err.field == "steps[0].agent"
    assert err.details["problems"] == [
        Problem(
            "steps[0].agent",
            'must be an agent id (a whole number) or "any" (any online agent)',
        ).as_dict(),
        Problem(
            "steps[0].when", "must be one of ['all_success', 'all_done', 'any_failed']"
        ).as_dict(),
    ]
    assert str(err).startswith("the pipeline has 2 problems: steps[0].agent: must be")


def test_yaml_reads_plain_data_only() -> None:
    # what a safe loader gives is what the document holds: no Python objects
    raw = load_document("name: x\nsteps: [{id: s, app: a/b, params: {n: 1, f: 0.5, t: yes}}]\n")
    assert raw["steps"][0]["params"] == {"n": 1, "f": 0.5, "t": True}
    with pytest.raises(yaml.YAMLError):
        yaml.load("!!python/object/apply:os.getcwd []", Loader=yaml.SafeLoader)

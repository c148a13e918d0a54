"""Expressions: what is read, how strings resolve, and the errors that name the expression."""

from __future__ import annotations

import pytest

from appyard.domain.expressions import (
    ExpressionError,
    Ref,
    Root,
    Scope,
    StepResult,
    Unknown,
    find_refs,
    gather,
    parse_template,
    resolve,
)


def test_parse_each_kind() -> None:
    t = parse_template(
        "a ${inputs.folder} b ${steps.import.outputs.project_id} ${steps.x-1.task_id}${item.id}"
    )
    refs = t.refs
    assert refs == [
        Ref("${inputs.folder}", Root.INPUTS, path=("folder",)),
        Ref("${steps.import.outputs.project_id}", Root.OUTPUTS, "import", ("project_id",)),
        Ref("${steps.x-1.task_id}", Root.TASK_ID, "x-1"),
        Ref("${item.id}", Root.ITEM, path=("id",)),
    ]
    assert t.parts[0] == "a " and t.whole is None
    assert parse_template("${ item }").whole == Ref("${ item }", Root.ITEM)


def test_escape_writes_a_literal() -> None:
    assert parse_template("cost: $${inputs.x}").parts == ("cost: ${inputs.x}",)
    assert resolve("$${x} and ${inputs.a}", Scope(inputs={"a": 1})) == "${x} and 1"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("${inputs}", "names no input"),
        ("${steps.a}", "steps.STEP.outputs.KEY or steps.STEP.task_id"),
        ("${steps.a.outputs}", "steps.STEP.outputs.KEY"),
        ("${steps.a.task_id.x}", "steps.STEP.outputs.KEY"),
        ("${env.HOME}", "reads 'env', which is not known"),
        ("${}", "empty name"),
        ("${inputs..a}", "empty name"),
        ("${inputs.a b}", "'a b'"),
        ("x ${inputs.a", "not closed"),
        ("${" + "a" * 600 + "}", "longer than 500"),
    ],
)
def test_bad_syntax_is_named(text: str, says: str) -> None:
    with pytest.raises(ExpressionError) as e:
        parse_template(text)
    assert says in str(e.value)
    assert e.value.expression.startswith("${")


def test_find_refs_locates_every_expression_and_every_error() -> None:
    value = {
        "a": "${inputs.x}",
        "b": ["plain", {"c": "${steps.s.outputs.k} ${oops} ${item}"}],
        "${inputs.key}": 1,  # keys are never expressions
    }
    found = find_refs(value, "params")
    assert [(f.at, f.ref.text if f.ref else None) for f in found] == [
        ("params.a", "${inputs.x}"),
        ("params.b[1].c", "${steps.s.outputs.k}"),
        ("params.b[1].c", None),
        ("params.b[1].c", "${item}"),
    ]
    assert found[2].error is not None and "${oops}" in str(found[2].error)


def test_whole_string_keeps_the_json_type() -> None:
    scope = Scope(
        inputs={"coef": 0.8, "flag": False, "tags": ["a", "b"], "cfg": {"n": 3}},
        steps={"import": StepResult({"project_id": 7, "ids": [1, 2]}, task_id=41)},
    )
    params = {
        "coef": "${inputs.coef}",
        "flag": "${inputs.flag}",
        "tags": "${inputs.tags}",
        "n": "${inputs.cfg.n}",
        "project": "${steps.import.outputs.project_id}",
        "second": "${steps.import.outputs.ids.1}",
        "task": "${steps.import.task_id}",
        "list": ["${inputs.coef}", 5, None],
    }
    assert resolve(params, scope) == {
        "coef": 0.8,
        "flag": False,
        "tags": ["a", "b"],
        "n": 3,
        "project": 7,
        "second": 2,
        "task": 41,
        "list": [0.8, 5, None],
    }


def test_text_gets_values_written_in() -> None:
    scope = Scope(inputs={"name": "cats", "coef": 0.8, "on": True, "ids": [1, 2], "none": None})
    assert (
        resolve("${inputs.name}-${inputs.coef}-${inputs.on}-${inputs.ids}-${inputs.none}", scope)
        == "cats-0.8-true-[1,2]-null"
    )


def test_item_only_inside_for_each() -> None:
    scope = Scope()
    with pytest.raises(ExpressionError, match=r"\$\{item\} is only known inside a for_each"):
        resolve("${item}", scope)
    assert resolve({"d": "${item}", "n": "${item.name}"}, scope.with_item({"name": "x"})) == {
        "d": {"name": "x"},
        "n": "x",
    }


def test_missing_output_names_the_expression_and_where() -> None:
    scope = Scope(steps={"import": StepResult({"project_id": 7}, task_id=1)})
    with pytest.raises(ExpressionError) as e:
        resolve({"images_dataset": "${steps.import.outputs.dataset_ids}"}, scope, "target")
    err = e.value
    assert err.expression == "${steps.import.outputs.dataset_ids}"
    assert err.at == "target.images_dataset"
    assert str(err) == (
        "target.images_dataset: ${steps.import.outputs.dataset_ids}: step 'import' finished "
        "without setting output 'dataset_ids' (its outputs: ['project_id'])"
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("${inputs.nope}", "the run has no value for input 'nope'"),
        ("${steps.later.outputs.k}", "step 'later' has not finished"),
        (
            "${steps.s.outputs.d.missing}",
            "steps.s.outputs.d has no key 'missing' (its keys: ['a'])",
        ),
        ("${steps.s.outputs.l.5}", "steps.s.outputs.l is an array of 2; it has no item '5'"),
        ("${steps.s.outputs.n.x}", "steps.s.outputs.n is 3, not an object or array"),
        ("${steps.none.task_id}", "step 'none' ran no task"),
    ],
)
def test_what_is_not_there_is_named(text: str, says: str) -> None:
    scope = Scope(
        steps={
            "s": StepResult({"d": {"a": 1}, "l": [1, 2], "n": 3}, task_id=1),
            "none": StepResult(),
        }
    )
    with pytest.raises(ExpressionError) as e:
        resolve(f"x={text}", scope, "params.p")
    assert says in str(e.value)
    assert e.value.expression == text
    assert str(e.value).startswith("params.p: ")


def test_partial_scope_leaves_unknowns() -> None:
    scope = Scope(inputs={"a": 1}, partial=True)
    whole = resolve("${steps.s.outputs.k}", scope)
    assert isinstance(whole, Unknown) and whole.kind is None
    text = resolve("id-${item}", scope)
    assert isinstance(text, Unknown) and text.kind == "string"
    assert resolve("${inputs.a}", scope) == 1
    assert isinstance(resolve("${inputs.b}", scope), Unknown)


def test_gather_reads_a_fan_out_as_lists() -> None:
    items = [
        StepResult({"tar": "/a.tar", "n": 1}, task_id=10),
        StepResult({"tar": "/b.tar"}, task_id=11),
    ]
    gathered = gather(items)
    assert gathered.outputs == {"tar": ["/a.tar", "/b.tar"]}
    assert gathered.task_id == [10, 11]
    scope = Scope(steps={"each": gathered})
    assert resolve("${steps.each.outputs.tar}", scope) == ["/a.tar", "/b.tar"]
    assert resolve("${steps.each.task_id}", scope) == [10, 11]
    assert gather([]) == StepResult({}, [])

"""``ModuleInfo``: the help text and ``get_arguments`` checks, exactly as the reference."""

from __future__ import annotations

from typing import Any

import pytest

from appyard.errors import InvalidArgumentsError, InvalidTargetError, TargetRequiredError
from appyard.schemas.ecosystem import ModuleInfoWire
from appyard.sdk import ModuleInfo


def wire(config: dict[str, Any], name: str = "Export to Pascal VOC") -> dict[str, Any]:
    """A dict shaped like the server's ``ModuleInfoWire`` JSON."""
    return {
        "id": 83,
        "slug": "appyard/export-to-pascal-voc",
        "name": name,
        "type": "app",
        "config": config,
        "readme": "# readme",
        "repo": None,
        "github_repo": None,
        "meta": {
            "version": "r2",
            "releases": [
                {"id": 2, "version": "r2", "sha256": "b" * 64, "size": 10,
                 "created_at": "2024-01-02T00:00:00Z"},
                {"id": 1, "version": "r1", "sha256": "a" * 64, "size": 9,
                 "created_at": "2024-01-01T00:00:00Z"},
            ],
        },
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-02T00:00:00Z",
    }  # fmt: skip


PASCAL = {
    "name": "Export to Pascal VOC",
    "slug": "appyard/export-to-pascal-voc",
    "main_script": "main.py",
    "modal_template_state": {"trainSplitCoef": 0.8, "pascalContourThickness": 3},
    "context_menu": {"target": ["images_project"]},
}


def module(config: dict[str, Any] | None = None) -> ModuleInfo:
    """The module with ``config`` (keys over a minimal publishable manifest), PASCAL by default."""
    base = {"name": "App", "slug": "t/app", "main_script": "main.py"}
    return ModuleInfo.from_wire(wire(PASCAL if config is None else {**base, **config}))


def test_fields_from_wire_dict_and_model() -> None:
    m = module()
    assert (m.id, m.slug, m.name, m.type, m.readme) == (
        83, "appyard/export-to-pascal-voc", "Export to Pascal VOC", "app", "# readme"
    )  # fmt: skip
    assert m.config == PASCAL
    assert m.version == "r2"
    assert [r["version"] for r in m.releases] == ["r2", "r1"]
    assert m.created_at is not None and m.updated_at is not None
    assert ModuleInfo.from_wire(ModuleInfoWire.model_validate(wire(PASCAL))) == m


def test_arguments_help_with_options_and_targets(capsys: pytest.CaptureFixture[str]) -> None:
    module().arguments_help()
    assert capsys.readouterr().out == (
        "App 'Export to Pascal VOC' has additional options that can be configured manually "
        "in modal dialog window before running app. You can change them or keep defaults: \n"
        "{\n"
        '    "pascalContourThickness": 3,\n'
        '    "trainSplitCoef": 0.8\n'
        "}\n"
        "App has to be started from the context menus:\n"
        "images_project : Context menu of images project. Target value is project id.\n"
        "It is needed to call get_arguments method with defined target argument "
        "(pass one of the values above).\n"
    )


def test_arguments_help_without_options_or_targets(capsys: pytest.CaptureFixture[str]) -> None:
    module({"name": "Hello"}).arguments_help()
    assert capsys.readouterr().out == (
        "App 'Export to Pascal VOC' has no additional options that can be configured manually "
        "in modal dialog window before running app.\n"
    )


def test_arguments_help_unknown_target_has_empty_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    module({"context_menu": {"target": ["videos_project"]}}).arguments_help()
    assert "videos_project : empty description\n" in capsys.readouterr().out


def test_get_arguments_defaults_plus_target() -> None:
    m = module()
    params = m.get_arguments(images_project=7)
    assert params == {"trainSplitCoef": 0.8, "pascalContourThickness": 3, "projectId": 7}
    params["trainSplitCoef"] = 0.1
    assert m.get_arguments(images_project=8)["trainSplitCoef"] == 0.8  # a fresh copy each call
    assert m.config["modal_template_state"]["trainSplitCoef"] == 0.8
    assert m.get_arguments(images_project=7.0)["projectId"] == 7  # integral float passes


def test_check_1_target_required() -> None:
    with pytest.raises(TargetRequiredError) as info:
        module().get_arguments()
    assert str(info.value) == (
        "target argument has to be defined. "
        "Call method 'arguments_help' to print help info for developer"
    )
    assert isinstance(info.value, ValueError)


def test_check_2_only_one_target() -> None:
    with pytest.raises(InvalidTargetError) as info:
        module().get_arguments(images_project=1, images_dataset=2)
    assert info.value.args[0] == "Only one target is allowed"
    assert isinstance(info.value, KeyError)


def test_check_2_comes_before_check_3() -> None:
    with pytest.raises(InvalidTargetError, match="Only one target"):
        module().get_arguments(files_file="/a", files_folder="/b")


def test_check_3_not_an_allowed_target() -> None:
    with pytest.raises(InvalidTargetError) as info:
        module().get_arguments(images_dataset=1)
    assert info.value.args[0] == (
        "You passed images_dataset, but allowed only one of the targets: ['images_project']"
    )


@pytest.mark.parametrize("value", ["7", True, 7.5, None])
def test_check_4_wrong_type(value: object) -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        module().get_arguments(images_project=value)
    assert str(info.value) == (
        f"Target images_project has value {value} of type {type(value)}. "
        "Allowed type is <class 'int'>"
    )


def test_string_targets() -> None:
    m = module({"context_menu": {"target": ["files_folder", "files_file"]}})
    assert m.get_arguments(files_folder="/data/") == {"folder": "/data/"}
    with pytest.raises(InvalidArgumentsError, match="Allowed type is <class 'str'>"):
        m.get_arguments(files_file=3)


def test_ecosystem_target_needs_no_value() -> None:
    only_eco = module({"modal_template_state": {"a": 1}, "context_menu": {"target": ["ecosystem"]}})
    assert only_eco.get_arguments() == {"a": 1}
    assert only_eco.get_arguments(ecosystem=None) == {"a": 1}
    both = module({"context_menu": {"target": ["images_project", "ecosystem"]}})
    assert both.get_arguments() == {}  # the Run button is allowed: no target needed
    assert both.get_arguments(images_project=3) == {"projectId": 3}
    assert module({"name": "no targets"}).get_arguments() == {}


def test_allowed_but_unknown_target_is_a_clear_error() -> None:
    m = module({"context_menu": {"target": ["videos_project"]}})
    with pytest.raises(InvalidTargetError) as info:
        m.get_arguments(videos_project=1)
    message = info.value.args[0]
    assert "videos_project" in message and "does not know" in message

"""The env helpers: variable order, JSON sources, int conversion, the reference's messages."""

from __future__ import annotations

import json

import pytest

from appyard.sdk import env

ALL = [
    "CONTEXT_TEAMID", "context.teamId", "TEAM_ID",
    "CONTEXT_WORKSPACEID", "context.workspaceId", "WORKSPACE_ID",
    "CONTEXT_PROJECTID", "context.projectId", "modal.state.projectId", "PROJECT_ID",
    "CONTEXT_DATASETID", "context.datasetId", "modal.state.datasetId", "DATASET_ID",
    "CONTEXT_FOLDER", "context.folder", "modal.state.folder", "FOLDER",
    "CONTEXT_FILE", "context.file", "modal.state.file", "FILE",
    "AGENT_ID", "TASK_ID", "USER_ID", "SERVER_ADDRESS", "API_TOKEN", "CONTEXT", "MODAL_STATE",
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL:
        monkeypatch.setenv(name, "")  # recorded, so a value set later is undone too
        monkeypatch.delenv(name)


ORDERS = [
    (env.team_id, ["CONTEXT_TEAMID", "context.teamId", "TEAM_ID"]),
    (env.workspace_id, ["CONTEXT_WORKSPACEID", "context.workspaceId", "WORKSPACE_ID"]),
    (
        env.project_id,
        ["CONTEXT_PROJECTID", "context.projectId", "modal.state.projectId", "PROJECT_ID"],
    ),
    (
        env.dataset_id,
        ["CONTEXT_DATASETID", "context.datasetId", "modal.state.datasetId", "DATASET_ID"],
    ),
    (env.agent_id, ["AGENT_ID"]),
    (env.task_id, ["TASK_ID"]),
]


@pytest.mark.parametrize(("fn", "keys"), ORDERS, ids=lambda v: getattr(v, "__name__", ""))
def test_first_set_variable_wins_and_is_an_int(
    monkeypatch: pytest.MonkeyPatch, fn: object, keys: list[str]
) -> None:
    assert callable(fn)
    # set from the last to the first: each newly set (earlier) key must take over
    for i, key in reversed(list(enumerate(keys))):
        monkeypatch.setenv(key, str(100 + i))
        assert fn() == 100 + i
        assert isinstance(fn(), int)


@pytest.mark.parametrize(("fn", "keys"), ORDERS, ids=lambda v: getattr(v, "__name__", ""))
def test_none_set_raises_the_reference_message(fn: object, keys: list[str]) -> None:
    assert callable(fn)
    name = fn.__name__  # type: ignore[attr-defined]
    with pytest.raises(KeyError) as info:
        fn()
    assert info.value.args[0] == (
        f"{name} is not defined as environment variable. One of the envs has to be defined: {keys}"
    )
    assert fn(raise_not_found=False) is None


def test_string_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyError, match="server_address is not defined"):
        env.server_address()
    assert env.api_token(raise_not_found=False) is None
    monkeypatch.setenv("SERVER_ADDRESS", "http://x:1")
    monkeypatch.setenv("API_TOKEN", "tok")
    assert env.server_address() == "http://x:1"
    assert env.api_token() == "tok"
    monkeypatch.setenv("FILE", "/a/b.txt")
    monkeypatch.setenv("modal.state.file", "/state.txt")
    assert env.file() == "/state.txt"
    monkeypatch.setenv("FOLDER", "/dir/")
    assert env.folder() == "/dir/"


def test_folder_and_file_orders() -> None:
    for fn, keys in (
        (env.folder, ["CONTEXT_FOLDER", "context.folder", "modal.state.folder", "FOLDER"]),
        (env.file, ["CONTEXT_FILE", "context.file", "modal.state.file", "FILE"]),
    ):
        with pytest.raises(KeyError) as info:
            fn()
        assert str(keys) in info.value.args[0]


def test_json_context_and_state_count_after_their_flat_twin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROJECT_ID", "1")
    monkeypatch.setenv("MODAL_STATE", json.dumps({"projectId": 2, "datasetId": 7}))
    assert env.project_id() == 2  # modal.state.projectId (JSON) beats PROJECT_ID
    monkeypatch.setenv("modal.state.projectId", "3")
    assert env.project_id() == 3  # the flat variable beats the JSON
    monkeypatch.setenv("CONTEXT", json.dumps({"projectId": 4, "teamId": 9}))
    assert env.project_id() == 4  # context.projectId (JSON) beats modal.state
    assert env.team_id() == 9
    assert env.dataset_id() == 7
    assert env.modal_state() == {"projectId": 2, "datasetId": 7}
    assert env.context() == {"projectId": 4, "teamId": 9}


def test_bad_json_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_STATE", "{not json")
    assert env.project_id(raise_not_found=False) is None
    assert env.modal_state() == {}


def test_non_integer_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_ID", "abc")
    with pytest.raises(ValueError, match="TEAM_ID='abc' is not an integer"):
        env.team_id()

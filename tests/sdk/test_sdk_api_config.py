"""How ``Api`` finds its server and token (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

import appyard as ay
from appyard.errors import ConfigurationError
from appyard.sdk import Api, AsyncApi


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SERVER_ADDRESS", "API_TOKEN", "TEAM_ID"):
        monkeypatch.setenv(name, "")  # recorded, so a value set later is undone too
        monkeypatch.delenv(name)
    monkeypatch.setenv("APPYARD_ENV_FILE", str(tmp_path / "absent.env"))


def test_no_address_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="SERVER_ADDRESS") as info:
        Api()
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://host:1/", "http://host:1"),
        ("https://appyard.example.com//", "https://appyard.example.com"),
        (" localhost:8080 ", "http://localhost:8080"),
    ],
)
def test_address_normalised(given: str, expected: str) -> None:
    api = Api(given, "tok")
    assert api.server_address == expected
    assert api._core.base_url == expected + "/api/v1"


def test_reads_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVER_ADDRESS", "srv:9")
    monkeypatch.setenv("API_TOKEN", "secret")
    api = Api()
    assert (api.server_address, api.token) == ("http://srv:9", "secret")
    assert "secret" not in repr(api)
    assert Api("other:1", "t2").token == "t2"  # arguments win over env


def test_missing_token_fails_at_the_first_call_with_a_hint() -> None:
    api = Api("127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="API_TOKEN"):
        api.user.me()


def test_resource_apis_and_status() -> None:
    api = Api("x:1", "t")
    for name in ("app", "task", "agent", "team", "workspace", "user", "module"):
        assert getattr(api, name) is not None
    assert api.task.Status.FINISHED is ay.Status.FINISHED
    assert str(api.task.Status.FINISHED) == "finished"


def test_from_env_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        Api.from_env(env_file=missing)
    with pytest.raises(FileNotFoundError, match=r"absent\.env"):
        Api.from_env()  # default: $APPYARD_ENV_FILE, else ~/appyard.env


def test_from_env_loads_file_without_overriding(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    f = tmp_path / "appyard.env"
    f.write_text("SERVER_ADDRESS=file-host:1\nAPI_TOKEN=file-token\nTEAM_ID=4\n")
    api = Api.from_env(env_file=f)
    assert (api.server_address, api.token) == ("http://file-host:1", "file-token")
    assert ay.env.team_id() == 4
    monkeypatch.setenv("API_TOKEN", "env-token")
    monkeypatch.setenv("SERVER_ADDRESS", "env-host:2")
    api = Api.from_env(env_file=tmp_path / "not-needed.env")  # both set: file not needed
    assert (api.server_address, api.token) == ("http://env-host:2", "env-token")


def test_async_twin_construction() -> None:
    api = AsyncApi("h:1", "t")
    assert api.server_address == "http://h:1"
    assert api.task.Status.ERROR is ay.Status.ERROR
    assert ay.AsyncApi is AsyncApi
    assert ay.Api is Api

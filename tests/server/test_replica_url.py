"""``APPYARD_REPLICA_URL`` (docs/tunnel.md): an http(s) address, or the server does not start,
saying why; unset, nothing is relayed."""

from __future__ import annotations

import pytest

from appyard.errors import ServerStartError
from appyard.server.settings import Settings


def test_the_replica_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPYARD_REPLICA_URL", raising=False)
    assert Settings.from_env().replica_url is None
    monkeypatch.setenv("APPYARD_REPLICA_URL", " http://10.0.0.5:8080/ ")
    assert Settings.from_env().replica_url == "http://10.0.0.5:8080"
    for bad in ("10.0.0.5:8080", "ftp://x", "http://" + "a" * 600):
        monkeypatch.setenv("APPYARD_REPLICA_URL", bad)
        with pytest.raises(ServerStartError, match="APPYARD_REPLICA_URL"):
            Settings.from_env()

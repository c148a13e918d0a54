"""Fixtures of the compat tests: the end-to-end ``env`` (a live server, a team, a real agent)."""

from tests.e2e.conftest import env

__all__ = ["env"]

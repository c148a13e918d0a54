"""The error the compatibility layer raises for a reference feature appyard does not have."""

from __future__ import annotations

from appyard.errors import AppyardError


class NotSupportedError(AppyardError, NotImplementedError):
    """A reference SDK argument or call has no equivalent in appyard; the message says what is
    unsupported and what to do instead (docs/compat.md lists every case)."""

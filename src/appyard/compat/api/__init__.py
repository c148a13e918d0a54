"""``supervisely.api``: the reference's API modules over appyard's SDK."""

from appyard.compat.api.api import Api

__all__ = ["Api"]

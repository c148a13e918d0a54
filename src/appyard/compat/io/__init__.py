"""``supervisely.io``: ``env`` (ids and credentials from the environment) and ``fs``."""

from appyard.compat.io import env as env
from appyard.compat.io import fs as fs

__all__ = ["env", "fs"]

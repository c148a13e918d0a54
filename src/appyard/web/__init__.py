"""The web UI: static files (HTML, CSS, JavaScript modules) the server serves at ``/``.

No build step: the browser loads ``static/index.html`` and its ES modules as they are; every
page talks to the same HTTP API (``/api/v1``) as the SDK, with the user's token.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"

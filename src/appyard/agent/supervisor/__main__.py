"""``python -m appyard.agent.supervisor``: the same as ``supervisor_main.py``, slower to start."""

import sys

from appyard.agent.supervisor.main import main

sys.exit(main())

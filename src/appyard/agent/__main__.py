"""``python -m appyard.agent --server URL --token TOKEN [--slots N] [--work-dir DIR]``."""

import sys

from appyard.agent.command import main

if __name__ == "__main__":
    sys.exit(main())

"""What the agent runs (by file path, ``python -I -S``) to start a task supervisor.

A script run by path is compiled from its source on every start (only imported modules are
cached as bytecode), and the supervisor is big enough for that to cost more than the
interpreter's own start-up. This stub is small: it imports the supervisor package from its
cached bytecode and runs it with the same arguments. The folder is appended to ``sys.path``
(after the standard library: no name of it can shadow a standard module), so the package is
the top-level ``supervisor`` here; its modules import one another relatively, and nothing else
of appyard.
"""

import sys

sys.path.append(__file__.rpartition("/")[0])

from supervisor.main import main

sys.exit(main())

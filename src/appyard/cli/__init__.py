"""The ``appyard`` command line: a thin layer over the SDK (plus the process commands)."""

"""``python -m appyard.cli``: what ``appyard up`` uses to start its agent child."""

from appyard.cli.main import main

main()

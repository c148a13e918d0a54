"""Pure rules of appyard: statuses, transitions, targets. No I/O, imports nothing of ours."""

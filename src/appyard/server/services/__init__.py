"""The rules of appyard: each function is one unit of work on a database session."""

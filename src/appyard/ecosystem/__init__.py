"""The bundled apps: each sub-folder is a real app folder with its config.json."""

"""HTTP routes: thin; they parse, authenticate, call one service, and shape the answer."""

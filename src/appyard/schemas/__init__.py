"""Pydantic wire models shared by the server, the agent and the SDK (the HTTP contract)."""

"""The API's docs: every route listed with its models, also the routes that answer with JSON
they serialized themselves (start, read, wait, the agent's poll and events)."""

from __future__ import annotations

import httpx

from tests.support import ServerProc

#: (method, path, status, model) of the routes that return a serialized response themselves
OWN_JSON = [
    ("post", "/api/v1/tasks", "201", "SessionStarted"),
    ("get", "/api/v1/tasks/{task_id}", "200", "TaskInfo"),
    ("get", "/api/v1/tasks/{task_id}/wait", "200", "WaitResult"),
    ("get", "/api/v1/tasks/{task_id}/logs", "200", "LogPage"),
    ("post", "/api/v1/tasks/{task_id}/events", "200", "TaskInfo"),
    ("post", "/api/v1/agents/{agent_id}/poll", "200", "PollResponse"),
    ("post", "/api/v1/teams/{team_id}/pipelines", "201", "PipelineInfo"),
    ("post", "/api/v1/pipeline-runs", "201", "RunInfo"),
    ("get", "/api/v1/pipeline-runs/{run_id}", "200", "RunInfo"),
    ("get", "/api/v1/pipeline-runs/{run_id}/wait", "200", "RunWaitResult"),
    ("post", "/api/v1/pipeline-runs/{run_id}/stop", "200", "RunInfo"),
    ("post", "/api/v1/pipeline-runs/{run_id}/resume", "200", "RunInfo"),
]


def test_docs_list_every_route_with_its_models(server: ServerProc) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for method, path, status, model in OWN_JSON:
        response = spec["paths"][path][method]["responses"][status]
        ref = response["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model}", (method, path)
    # the sections in the order they always had, whatever order requests are matched in
    tags = [t["name"] for t in spec["tags"]]
    assert tags == [
        "meta",
        "accounts",
        "ecosystem",
        "agents",
        "tasks",
        "pipelines",
        "projects",
        "files",
    ]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("tags"), (method, path)

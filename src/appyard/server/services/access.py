"""Who may see and act on what: the "get X, or 404 if the caller may not see it" helpers the
services share (projects, datasets, images, annotations, tasks, agents).

A user acts within the teams it is a member of, by role (``accounts.team_role``). An object of a
team the caller is not in is answered exactly like a missing one, a 404 naming the object (not
its team), so that others' ids do not leak; a member whose role is too low gets
``team_role``'s 403 naming the role needed. An agent token acts only as its agent; a task token
only in its task's team.

Cost: each helper reads its object in one query, then the membership through ``team_role``
(a helper over many objects asks once per team). Hot paths that read an object and the caller's
membership in one statement (a task on every look of a wait, a start's workspace) keep their own
reads, with the same refusals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from sqlalchemy import Row, Table, bindparam, select
from sqlalchemy.orm import Session, undefer

from appyard.errors import NotFoundError, PermissionDeniedError
from appyard.schemas.accounts import Role
from appyard.server.db.models import Agent, Dataset, Image, Project, Task
from appyard.server.security import Principal
from appyard.server.services.accounts import team_role


def allow(s: Session, p: Principal, team_id: int, need: Role, missing: NotFoundError) -> None:
    """The caller's role in ``team_id`` is at least ``need``; not a member: ``missing`` (the
    object's own 404, not the team's)."""
    try:
        team_role(s, p, team_id, need)
    except NotFoundError:
        raise missing from None


def not_visible(what: str, object_id: int, field: str) -> NotFoundError:
    """The one 404 of an object that is missing or of a team the caller is not in."""
    return NotFoundError(
        f"{what} {object_id} not found, or it is not in one of your teams.", field=field
    )


def project_missing(project_id: int) -> NotFoundError:
    return not_visible("Project", project_id, "project_id")


def dataset_missing(dataset_id: int) -> NotFoundError:
    return not_visible("Dataset", dataset_id, "dataset_id")


def image_missing(image_id: int, field: str = "image_id") -> NotFoundError:
    return not_visible("Image", image_id, field)


# -- images projects ----------------------------------------------------------------------------


def get_project(
    s: Session, p: Principal, project_id: int, need: Role = "viewer", lock: bool = False
) -> Project:
    """The project if the caller may act on it with ``need``; ``lock`` holds its row (writers
    of its meta take it exclusively, writers of annotations shared)."""
    stmt = select(Project).where(Project.id == project_id)
    project = s.scalar(stmt.with_for_update() if lock else stmt)
    if project is None:
        raise project_missing(project_id)
    allow(s, p, project.team_id, need, project_missing(project_id))
    return project


def get_dataset(
    s: Session, p: Principal, dataset_id: int, need: Role = "viewer", lock: bool = False
) -> tuple[Dataset, Project]:
    """The dataset with its project (read together: the project holds the team).

    ``lock`` holds the project's row shared (``FOR KEY SHARE``) before anything is written
    into the dataset: a writer of a new row must take the project before the dataset, in the
    order a deletion of the project takes them, or the two deadlock (the new row's foreign keys
    lock the dataset first, then wait on the project the deletion holds)."""
    stmt = (
        select(Dataset, Project)
        .join(Project, Project.id == Dataset.project_id)
        .where(Dataset.id == dataset_id)
    )
    row = s.execute(stmt.with_for_update(key_share=True, of=Project) if lock else stmt).first()
    if row is None:
        raise dataset_missing(dataset_id)
    dataset, project = row
    allow(s, p, project.team_id, need, dataset_missing(dataset_id))
    return dataset, project


def get_image(
    s: Session, p: Principal, image_id: int, need: Role = "viewer", annotation: bool = False
) -> Image:
    """The image; its annotation (a deferred column) only with ``annotation``."""
    stmt = select(Image).where(Image.id == image_id)
    if annotation:
        stmt = stmt.options(undefer(Image.annotation))
    image = s.scalar(stmt)
    if image is None:
        raise image_missing(image_id)
    allow(s, p, image.team_id, need, image_missing(image_id))
    return image


def images_in_order(
    s: Session,
    p: Principal,
    ids: list[int],
    need: Role,
    field: Callable[[int], str],
    annotation: bool = False,
) -> list[Image]:
    """The images of ``ids`` in that order, in one query; the first one missing or of a team
    the caller is not in is a 404 naming its place (``field(i)``)."""
    stmt = select(Image).where(Image.id.in_(set(ids)))
    if annotation:
        stmt = stmt.options(undefer(Image.annotation))
    found = {im.id: im for im in s.scalars(stmt)}
    checked: set[int] = set()
    out: list[Image] = []
    for i, image_id in enumerate(ids):
        image = found.get(image_id)
        if image is None:
            raise image_missing(image_id, field(i))
        if image.team_id not in checked:
            allow(s, p, image.team_id, need, image_missing(image_id, field(i)))
            checked.add(image.team_id)
        out.append(image)
    return out


# -- tasks and agents ---------------------------------------------------------------------------


def get_task(s: Session, p: Principal, task_id: int, need: Role = "viewer") -> Task:
    """The task if the caller may see it (and act with role ``need``); else 404/403. An agent
    sees the tasks it holds, whatever ``need``."""
    t = s.get(Task, task_id)
    missing = not_visible("Task", task_id, "task_id")
    if t is None:
        raise missing
    if p.kind == "agent":
        if t.agent_id != p.agent_id:
            raise missing
        return t
    allow(s, p, t.team_id, need, missing)
    return t


def _speaks_for(p: Principal, agent_id: int | None) -> int:
    """The agent id of an agent token (``agent_id``'s, when given); else 403."""
    if p.kind != "agent" or p.agent_id is None or (agent_id is not None and agent_id != p.agent_id):
        raise PermissionDeniedError(
            "Only the agent's own token can speak the agent protocol for it."
        )
    return p.agent_id


def _agent_missing(agent_id: int) -> NotFoundError:
    return NotFoundError(f"Agent {agent_id} not found.", field="agent_id")


def own_agent(s: Session, p: Principal, agent_id: int | None = None) -> Agent:
    """The agent of an agent token (which must be ``agent_id``'s, when given): only an agent
    speaks its own protocol."""
    agent = s.get(Agent, _speaks_for(p, agent_id))
    if agent is None:
        raise _agent_missing(p.agent_id or 0)
    return agent


_AGENTS = cast(Table, Agent.__table__)
#: what a poll needs of its agent, as a plain row (a poll is on every session's path)
_POLLING = select(_AGENTS.c.id, _AGENTS.c.team_id, _AGENTS.c.slots, _AGENTS.c.online).where(
    _AGENTS.c.id == bindparam("agent_id")
)


def own_agent_row(s: Session, p: Principal, agent_id: int) -> Row[int, int, int, bool]:
    """``own_agent`` as a row of id, team_id, slots and online, with the same refusals."""
    own = _speaks_for(p, agent_id)
    agent = s.connection().execute(_POLLING, {"agent_id": own}).first()
    if agent is None:
        raise _agent_missing(own)
    return agent

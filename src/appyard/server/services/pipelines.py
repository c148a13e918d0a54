"""Saved pipelines and runs: save (checked, versioned by content), list, read, run, stop,
resume. The engine that advances runs is ``pipeline_engine``; this module is what clients
ask of it (``docs/pipelines.md``, ``docs/http-api.md``)."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appyard.domain.pipeline import RunState, StepState
from appyard.errors import BadRequestError, ConflictError, NotFoundError
from appyard.schemas.common import Page
from appyard.schemas.manifest import Manifest
from appyard.schemas.pipeline import PipelineDoc, load_document, refusal
from appyard.schemas.pipeline_check import AppMissing, check_pipeline, validate_pipeline
from appyard.schemas.pipeline_runs import (
    AttemptInfo,
    PipelineCreate,
    PipelineInfo,
    RunCreate,
    RunInfo,
    StepInfo,
    StepItems,
)
from appyard.server.db.models import (
    Module,
    Pipeline,
    PipelineAttempt,
    PipelineRun,
    PipelineStep,
    Release,
    Task,
    utcnow,
)
from appyard.server.security import Principal
from appyard.server.services.access import allow, not_visible
from appyard.server.services.accounts import get_workspace, require_user, team_role
from appyard.server.services.ecosystem import runs_in_team
from appyard.server.services.manifest import release_manifest
from appyard.server.services.paging import keyset_page
from appyard.server.services.pipeline_engine import (
    advance,
    compiled,
    lock_run,
    resume_run,
    stop_run,
)

#: a run can be resumed from these
RESUMABLE = (RunState.ERROR.value, RunState.STOPPED.value)


class DbCatalog:
    """The catalog as a team sees it (``pipeline_check.Catalog``): a module of the team or a
    public one, its release of a version (or its newest), its manifest."""

    def __init__(self, s: Session, team_id: int) -> None:
        self.s = s
        self.team_id = team_id

    def manifest(self, slug: str, version: str | None) -> Manifest | AppMissing:
        found = self.s.execute(
            select(Module.id, Module.team_id, Module.public).where(Module.slug == slug)
        ).first()
        if found is None or not runs_in_team(found.team_id, found.public, self.team_id):
            return AppMissing(
                f"there is no app {slug} in the catalog of team {self.team_id}; publish it "
                "(appyard app publish) or check the slug"
            )
        stmt = select(Release).where(Release.module_id == found.id).order_by(Release.id.desc())
        if version is not None:
            stmt = stmt.where(Release.version == version)
        release = self.s.scalars(stmt.limit(1)).first()
        if release is None:
            if version is None:
                return AppMissing(f"app {slug} has no release yet; publish one")
            versions = self.s.scalars(
                select(Release.version)
                .where(Release.module_id == found.id)
                .order_by(Release.id.desc())
                .limit(20)
            ).all()
            return AppMissing(
                f"app {slug} has no version {version!r}; it has {versions}", "version"
            )
        try:
            return release_manifest(release.sha256, release.config)
        except BadRequestError as e:
            return AppMissing(f"the manifest of app {slug} {release.version} is invalid: {e}")


# -- saved pipelines ---------------------------------------------------------------------------


def _pipeline_info(row: Pipeline) -> PipelineInfo:
    inputs = row.document.get("inputs") or {}
    return PipelineInfo(
        id=row.id,
        team_id=row.team_id,
        name=row.name,
        version=row.version,
        description=row.description,
        document=row.document,
        inputs=inputs if isinstance(inputs, dict) else {},
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _raw(document: dict[str, Any] | None, text: str | None) -> Any:
    if text is not None:
        return load_document(text)
    return document


def _save(s: Session, user_id: int, team_id: int, raw: Any) -> tuple[Pipeline, bool]:
    """The pipeline of this content in the team (made now, or found): and whether it is new."""
    doc = validate_pipeline(raw, catalog=DbCatalog(s, team_id))
    document = doc.to_document()
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    sha = hashlib.sha256(canonical.encode()).hexdigest()
    same = select(Pipeline).where(Pipeline.team_id == team_id, Pipeline.sha256 == sha)
    found = s.scalar(same)
    if found is not None:
        return found, False
    row = Pipeline(
        team_id=team_id,
        name=doc.name,
        version=sha[:12],
        sha256=sha,
        description=doc.description,
        document=document,
        created_by=user_id,
        created_at=utcnow(),
    )
    try:
        with s.begin_nested():
            s.add(row)
            s.flush()
    except IntegrityError:  # saved by another request meanwhile: that one
        found = s.scalar(same)
        if found is None:
            raise
        return found, False
    return row, True


def create_pipeline(
    s: Session, p: Principal, *, team_id: int, body: PipelineCreate
) -> tuple[PipelineInfo, bool]:
    """Save a pipeline (checked as a run would be, but for its inputs); the same content
    again is the same pipeline (``False``: not made now)."""
    team_role(s, p, team_id, "developer")
    user_id = require_user(p)
    row, made = _save(s, user_id, team_id, _raw(body.document, body.text))
    return _pipeline_info(row), made


def _pipeline_missing(pipeline_id: int) -> NotFoundError:
    return not_visible("Pipeline", pipeline_id, "pipeline_id")


def _visible_pipeline(s: Session, p: Principal, pipeline_id: int) -> Pipeline:
    row = s.get(Pipeline, pipeline_id)
    missing = _pipeline_missing(pipeline_id)
    if row is None:
        raise missing
    allow(s, p, row.team_id, "viewer", missing)
    return row


def get_pipeline(s: Session, p: Principal, *, pipeline_id: int) -> PipelineInfo:
    return _pipeline_info(_visible_pipeline(s, p, pipeline_id))


def list_pipelines(
    s: Session, p: Principal, *, team_id: int, name: str | None = None
) -> list[PipelineInfo]:
    """The newest version of each pipeline of the team, newest first; with ``name``, every
    version of that one, newest first."""
    team_role(s, p, team_id)
    stmt = select(Pipeline).where(Pipeline.team_id == team_id).order_by(Pipeline.id.desc())
    if name is not None:
        stmt = stmt.where(Pipeline.name == name)
    else:
        newest = (
            select(func.max(Pipeline.id)).where(Pipeline.team_id == team_id).group_by(Pipeline.name)
        )
        stmt = stmt.where(Pipeline.id.in_(newest))
    return [_pipeline_info(r) for r in s.scalars(stmt.limit(1000))]


# -- runs --------------------------------------------------------------------------------------


def _run_missing(run_id: int) -> NotFoundError:
    return not_visible("Pipeline run", run_id, "run_id")


def create_run(s: Session, p: Principal, *, body: RunCreate, files_dir: Path) -> RunInfo:
    """Start a run: every check first (the document, the inputs, the catalog), then the run,
    its steps, and the first steps' sessions, in one transaction. A retried call with the
    same ``idempotency_key`` returns the first run."""
    user_id = require_user(p)
    team_id = get_workspace(s, p, body.workspace_id, "developer").team_id
    if body.pipeline_id is not None:
        pipe = s.get(Pipeline, body.pipeline_id)
        if pipe is None or pipe.team_id != team_id:
            raise NotFoundError(
                f"Pipeline {body.pipeline_id} not found in team {team_id} (the workspace's).",
                field="pipeline_id",
            )
    else:
        pipe, _ = _save(s, user_id, team_id, _raw(body.document, body.text))
    if body.idempotency_key is not None:
        prior = s.scalar(
            select(PipelineRun).where(
                PipelineRun.created_by == user_id,
                PipelineRun.idempotency_key == body.idempotency_key,
            )
        )
        if prior is not None:
            asked = (body.workspace_id, pipe.id, body.inputs)
            if asked != (prior.workspace_id, prior.pipeline_id, prior.inputs):
                raise ConflictError(
                    f"idempotency_key {body.idempotency_key!r} was used for run {prior.id} "
                    "with other arguments; use a new key for a new run.",
                    field="idempotency_key",
                )
            return run_info(s, prior)
    doc: PipelineDoc = compiled(s, pipe.id).doc
    problems = check_pipeline(doc, inputs=body.inputs, catalog=DbCatalog(s, team_id))
    if problems:
        raise refusal(problems)
    now = utcnow()
    run = PipelineRun(
        team_id=team_id,
        workspace_id=body.workspace_id,
        pipeline_id=pipe.id,
        status=RunState.QUEUED.value,
        inputs=body.inputs,
        created_by=user_id,
        idempotency_key=body.idempotency_key,
        open_steps=len(doc.steps),
        failed_steps=0,
        created_at=now,
        updated_at=now,
    )
    try:
        with s.begin_nested():
            s.add(run)
            s.flush()
    except IntegrityError:
        raise ConflictError(
            "A run with this idempotency_key is being started; retry to get it.",
            field="idempotency_key",
        ) from None
    s.add_all(
        PipelineStep(
            run_id=run.id,
            step=step.id,
            position=i,
            state=StepState.PENDING.value,
            units_open=0,
            units_error=0,
            units_stopped=0,
        )
        for i, step in enumerate(doc.steps)
    )
    s.flush()
    advance(s, run, files_dir=files_dir, start={step.id for step in doc.steps})
    return run_info(s, run)


def _visible_run(s: Session, p: Principal, run_id: int, need: str = "viewer") -> PipelineRun:
    run = s.get(PipelineRun, run_id)
    missing = _run_missing(run_id)
    if run is None:
        raise missing
    allow(s, p, run.team_id, need, missing)  # type: ignore[arg-type]
    return run


def get_run(s: Session, p: Principal, *, run_id: int) -> RunInfo:
    return run_info(s, _visible_run(s, p, run_id))


def run_status(s: Session, p: Principal, *, run_id: int) -> tuple[int, RunState]:
    """A run's team and status, from its row alone (not its steps): what a wait reads at
    each change of the run, so that a wake costs the same however many steps the run has."""
    run = _visible_run(s, p, run_id)
    return run.team_id, RunState(run.status)


def team_of_run(s: Session, p: Principal, *, run_id: int) -> int:
    return _visible_run(s, p, run_id).team_id


def stop(s: Session, p: Principal, *, run_id: int, files_dir: Path) -> RunInfo:
    """Stop a run: ``terminating`` while its sessions stop, then ``stopped``. A run that
    ended already is answered as it is."""
    _visible_run(s, p, run_id, "developer")
    run = lock_run(s, run_id)
    assert run is not None
    if run.status in (RunState.QUEUED.value, RunState.RUNNING.value):
        stop_run(s, run, files_dir=files_dir)
    return run_info(s, run)


def resume(s: Session, p: Principal, *, run_id: int, files_dir: Path) -> RunInfo:
    """Run again what did not finish of a run that ended ``error`` or ``stopped``."""
    _visible_run(s, p, run_id, "developer")
    run = lock_run(s, run_id)
    assert run is not None
    if run.status not in RESUMABLE:
        raise ConflictError(
            f"Pipeline run {run_id} is {run.status}; only a run that ended error or stopped "
            "can be resumed.",
            field="status",
            details={"status": run.status},
        )
    resume_run(s, run, files_dir=files_dir)
    return run_info(s, run)


def list_runs(
    s: Session,
    p: Principal,
    *,
    team_id: int,
    statuses: Sequence[RunState] = (),
    pipeline_id: int | None = None,
    name: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> Page[RunInfo]:
    """A team's runs, newest first, a keyset page at a time."""
    team_role(s, p, team_id)
    stmt = select(PipelineRun).where(PipelineRun.team_id == team_id)
    if statuses:
        stmt = stmt.where(PipelineRun.status.in_([st.value for st in statuses]))
    if pipeline_id is not None:
        stmt = stmt.where(PipelineRun.pipeline_id == pipeline_id)
    if name is not None:
        named = select(Pipeline.id).where(Pipeline.team_id == team_id, Pipeline.name == name)
        stmt = stmt.where(PipelineRun.pipeline_id.in_(named))
    if cursor is not None:
        stmt = stmt.where(PipelineRun.id < cursor)
    rows = list(s.scalars(stmt.order_by(PipelineRun.id.desc()).limit(limit + 1)))
    infos = {i.id: i for i in run_infos(s, rows[:limit])}
    return keyset_page(rows, limit, lambda r: infos[r.id])


# -- the wire form ----------------------------------------------------------------------------


def run_info(s: Session, run: PipelineRun) -> RunInfo:
    return run_infos(s, [run])[0]


_ITEM_STATE = {
    "finished": "finished",
    "error": "error",
    "timeout": "error",
    "stopped": "stopped",
    "cancelled": "stopped",
    "running": "running",
    "pending": "running",  # waiting to retry: an item in progress
    "queued": "pending",
}


def run_infos(s: Session, runs: Sequence[PipelineRun]) -> list[RunInfo]:
    """The wire form of runs, with their steps and attempts, in a few reads for all."""
    if not runs:
        return []
    ids = [r.id for r in runs]
    pipes = {
        row.id: row
        for row in s.execute(
            select(Pipeline.id, Pipeline.name, Pipeline.version).where(
                Pipeline.id.in_({r.pipeline_id for r in runs})
            )
        )
    }
    steps: dict[int, list[PipelineStep]] = defaultdict(list)
    for row in s.scalars(
        select(PipelineStep)
        .where(PipelineStep.run_id.in_(ids))
        .order_by(PipelineStep.run_id, PipelineStep.position)
    ):
        steps[row.run_id].append(row)
    attempts: dict[int, list[PipelineAttempt]] = defaultdict(list)
    finished_tasks: list[int] = []
    for att in s.scalars(
        select(PipelineAttempt)
        .where(PipelineAttempt.run_id.in_(ids))
        .order_by(PipelineAttempt.item, PipelineAttempt.n, PipelineAttempt.id)
    ):
        attempts[att.step_row_id].append(att)
        if att.status == "finished" and att.task_id is not None:
            finished_tasks.append(att.task_id)
    outputs: dict[int, dict[str, Any]] = {}
    for start in range(0, len(finished_tasks), 500):
        chunk = finished_tasks[start : start + 500]
        for tid, got in s.execute(select(Task.id, Task.outputs).where(Task.id.in_(chunk))):
            outputs[tid] = got or {}
    out: list[RunInfo] = []
    for run in runs:
        comp = compiled(s, run.pipeline_id)
        pipe = pipes[run.pipeline_id]
        infos: list[StepInfo] = []
        for row in steps[run.id]:
            spec = comp.doc.step(row.step)
            mine = attempts[row.id]
            items: StepItems | None = None
            step_outputs: Any = None
            if spec.for_each is not None:
                newest: dict[int, PipelineAttempt] = {}
                for att in mine:
                    if att.item is not None:
                        newest[att.item] = att  # (ordered by n)
                counts = {"finished": 0, "error": 0, "running": 0, "pending": 0, "stopped": 0}
                total = len(row.items) if row.items is not None else 0
                for att in newest.values():
                    counts[_ITEM_STATE[att.status]] += 1
                counts["pending"] += total - len(newest)
                items = StepItems(total=total, **counts)
                if row.items is not None:
                    step_outputs = [
                        outputs.get(newest[i].task_id or 0)
                        if i in newest and newest[i].status == "finished"
                        else None
                        for i in range(total)
                    ]
            else:
                done = [a for a in mine if a.status == "finished" and a.task_id is not None]
                if done:
                    step_outputs = outputs.get(done[-1].task_id or 0, {})
            infos.append(
                StepInfo(
                    id=row.step,
                    app=spec.app,
                    state=StepState(row.state),
                    reason=row.reason,
                    needs=list(spec.needs),
                    attempts=[
                        AttemptInfo(
                            n=a.n,
                            item=a.item,
                            task_id=a.task_id,
                            status="pending" if a.status == "queued" else a.status,  # type: ignore[arg-type]
                            error=a.error,
                            started_at=a.started_at,
                            ended_at=a.ended_at,
                        )
                        for a in mine
                    ],
                    items=items,
                    outputs=step_outputs,
                )
            )
        out.append(
            RunInfo(
                id=run.id,
                team_id=run.team_id,
                workspace_id=run.workspace_id,
                pipeline_id=run.pipeline_id,
                pipeline_name=pipe.name,
                pipeline_version=pipe.version,
                status=RunState(run.status),
                inputs=run.inputs,
                error=run.error,
                created_at=run.created_at,
                started_at=run.started_at,
                ended_at=run.ended_at,
                created_by=run.created_by,
                steps=infos,
            )
        )
    return out

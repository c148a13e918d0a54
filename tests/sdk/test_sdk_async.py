"""``AsyncApi`` against a real server: every resource, and the task calls with a real agent
running a real app that reports through ``AsyncApi`` itself (``tests/sdk/apps``)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from appyard.domain.status import Status
from appyard.errors import ModuleNotFoundInEcosystem, NotFoundError, TaskFinishedWithError
from appyard.sdk import AsyncApi
from appyard.sdk.archive import build_archive
from tests.sdk.test_sdk_projects import META, full_annotation, png
from tests.support import ServerProc, World

REPORTER = Path(__file__).parent / "apps" / "async-reporter"
_counter = itertools.count(1)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    """Wait until ``check()`` is true, checking often; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


def test_accounts_and_agents(server: ServerProc) -> None:
    n = next(_counter)

    async def main() -> None:
        async with AsyncApi(server.url, server.admin_token) as api:
            assert await api.health() == {"status": "ok"}
            assert (await api.user.me()).is_admin
            team = await api.team.create(f"async-team-{n}")
            assert team.id in [t.id for t in await api.team.get_list()]
            space = await api.workspace.create(team.id, "ws", "where tasks go")
            assert [w.id for w in await api.workspace.get_list(team.id)] == [space.id]

            login = f"async-user-{n}"
            user = await api.user.create(login, password="correct horse")
            assert login in [u.login for u in await api.user.get_list()]
            member = await api.team.add_member(team.id, login, "viewer")
            assert (member.user_id, member.role) == (user.id, "viewer")
            assert login in [m.login for m in await api.team.get_members(team.id)]
            minted = await api.user.create_token("async", user_id=user.id)
            signed_in = await api.user.login(login, "correct horse")
            async with AsyncApi(server.url, minted.token) as theirs:
                assert (await theirs.user.me()).id == user.id
                assert [t.id for t in await theirs.team.get_list()] == [team.id]
                mine = {t.id for t in await theirs.user.get_tokens()}
                assert {minted.id, signed_in.id} <= mine
                await theirs.user.revoke_token(signed_in.id)
                assert signed_in.id not in {t.id for t in await theirs.user.get_tokens()}

            agent = await api.agent.create(team.id, "box")
            assert [a.id for a in await api.agent.get_list(team.id)] == [agent.id]
            async with AsyncApi(server.url, agent.token) as as_agent:
                assert (await as_agent.agent.me()).id == agent.id

    asyncio.run(main())


def test_catalog(server: ServerProc, pascal_app: Path) -> None:
    slug = "appyard/export-to-pascal-voc"

    async def main() -> None:
        async with AsyncApi(server.url, server.admin_token) as api:
            published = await api.module.publish(pascal_app)
            module_id = published.module_id
            again = await api.module.publish_archive(build_archive(pascal_app))
            assert (again.module_id, again.created) == (module_id, False)
            archive = await api.module.download_archive(published.release.sha256)
            assert hashlib.sha256(archive).hexdigest() == published.release.sha256

            assert [m.id for m in await api.module.get_list(slug=slug)] == [module_id]
            assert (await api.module.get(module_id)).slug == slug
            assert await api.module.lookup(slug) == module_id
            assert await api.module.resolve(slug) == module_id
            assert await api.module.resolve(str(module_id)) == module_id
            assert await api.app.get_ecosystem_module_id(slug) == module_id
            info = await api.app.get_ecosystem_module_info(slug=slug)
            assert info.id == module_id and info.config["main_script"] == "main.py"
            with pytest.raises(ModuleNotFoundInEcosystem):
                await api.module.lookup("nobody/nothing")

    asyncio.run(main())


def test_projects_images_and_annotations(server: ServerProc, tmp_path: Path) -> None:
    n = next(_counter)
    picture = tmp_path / "b.png"
    picture.write_bytes(png(64, 48, (200, 10, 10)))

    async def main() -> None:
        async with AsyncApi(server.url, server.admin_token) as api:
            team = await api.team.create(f"async-data-{n}")
            space = await api.workspace.create(team.id, "ws")
            project = await api.project.create(space.id, "Shapes")
            assert await api.project.get_info_by_id(project.id) == project
            assert await api.project.get_info_by_name(space.id, "Shapes") == project
            assert await api.project.get_info_by_name(space.id, "nope") is None
            assert [p.id for p in await api.project.get_list(space.id)] == [project.id]
            stored = await api.project.update_meta(project.id, META)
            assert [c["name"] for c in stored["classes"]] == ["box", "road", "blob"]
            assert await api.project.get_meta(project.id) == stored

            ds = await api.dataset.create(project.id, "train")
            assert await api.dataset.get_info_by_id(ds.id) == ds
            assert [d.id for d in await api.dataset.get_list(project.id)] == [ds.id]

            a = await api.image.upload_bytes(ds.id, "a.png", png(64, 48))
            b = await api.image.upload_path(ds.id, "b.png", picture)
            done: list[int] = []
            more = await api.image.upload_paths(
                ds.id, ["c.png", "d.png"], [picture, picture], progress_cb=done.append
            )
            assert done == [1, 1]
            ids = [a.id, b.id, *(i.id for i in more)]
            assert [i.id for i in await api.image.get_list(ds.id)] == ids
            first = await api.image.get_page(ds.id, limit=3)
            assert [i.id for i in first.items] == ids[:3] and first.next_cursor
            rest = await api.image.get_page(ds.id, limit=3, cursor=first.next_cursor)
            assert [i.id for i in rest.items] == ids[3:]
            assert (await api.image.get_info_by_id(b.id)).name == "b.png"
            assert await api.image.download_bytes(a.id) == png(64, 48)
            await api.image.download_path(b.id, tmp_path / "out" / "b.png")
            assert (tmp_path / "out" / "b.png").read_bytes() == picture.read_bytes()

            await api.annotation.upload_json(a.id, full_annotation())
            assert [o["class"] for o in (await api.annotation.download_json(a.id))["objects"]] == [
                "box",
                "road",
                "blob",
            ]
            batches: list[int] = []
            await api.annotation.upload_jsons(
                ids[1:], [full_annotation()] * 3, progress_cb=batches.append
            )
            assert batches == [3]
            anns = await api.annotation.download_jsons(ids)
            assert [len(ann["objects"]) for ann in anns] == [3, 3, 3, 3]

            doomed = await api.project.create(space.id, "doomed")
            with pytest.raises(RuntimeError):
                async with api.project.removed_on_failure(doomed.id):
                    raise RuntimeError("half built")
            assert await api.project.get_info_by_name(space.id, "doomed") is None
            await api.project.remove(project.id)
            with pytest.raises(NotFoundError):
                await api.project.get_info_by_id(project.id)

    asyncio.run(main())


def test_team_files(server: ServerProc, tmp_path: Path) -> None:
    n = next(_counter)
    one = tmp_path / "one.bin"
    one.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: sent in pieces
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")

    async def main() -> None:
        async with AsyncApi(server.url, server.admin_token) as api:
            team_id = (await api.team.create(f"async-files-{n}")).id
            assert (await api.file.mkdir(team_id, "/in")).is_dir
            assert (await api.file.upload(team_id, one, "/in/one.bin")).size == one.stat().st_size
            uploaded = await api.file.upload_directory(team_id, tree, "/tree")
            assert sorted(f.path for f in uploaded) == ["/tree/a.txt", "/tree/sub/b.txt"]
            assert await api.file.exists(team_id, "/in/one.bin")
            assert not await api.file.exists(team_id, "/in")
            assert await api.file.dir_exists(team_id, "/tree/empty")
            assert await api.file.get_info_by_path(team_id, "/nope") is None
            listed = await api.file.list(team_id, "/tree", recursive=True)
            assert [f.path for f in listed] == [
                "/tree/a.txt",
                "/tree/empty",
                "/tree/sub",
                "/tree/sub/b.txt",
            ]
            await api.file.download(team_id, "/in/one.bin", tmp_path / "back" / "one.bin")
            assert (tmp_path / "back" / "one.bin").read_bytes() == one.read_bytes()
            await api.file.download_directory(team_id, "/tree", tmp_path / "again")
            assert (tmp_path / "again" / "sub" / "b.txt").read_text() == "b"
            assert (tmp_path / "again" / "empty").is_dir()
            await api.file.remove(team_id, "/tree", recursive=True)
            assert not await api.file.dir_exists(team_id, "/tree")

    asyncio.run(main())


def test_tasks_with_a_real_agent_and_app(world: World, tmp_path: Path) -> None:
    """The app reports with ``set_*`` through ``AsyncApi``; the test follows it with
    ``wait_watching``, reads it every way, stops it, and sees a failing run's log tail."""
    team_id, workspace_id = world.team_id, world.workspace_id

    async def main() -> None:
        async with AsyncApi(world.server.url, world.server.admin_token) as api:
            agent = await api.agent.create(team_id, "async-agent")
            world.start_agent(agent.token, name="async-agent")

            async def online() -> bool:
                return any(
                    a.id == agent.id and a.status == "online"
                    for a in await api.agent.get_list(team_id)
                )

            await eventually(online, "the agent to come online")
            module_id = (await api.module.publish(REPORTER)).module_id
            started = await api.app.start(
                agent_id=agent.id, module_id=module_id, workspace_id=workspace_id
            )
            task_id = started.task_id
            seen: list[Any] = []
            async for info in api.task.watch(task_id):  # every change, readiness too
                seen.append(info)
                if info.ready:
                    break
            assert seen[-1].status is Status.STARTED
            assert await api.task.is_ready_for_api_calls(task_id)
            assert await api.app.wait_until_ready_for_api_calls(task_id, 1, 1)
            done = [t.progress.current for t in seen if t.progress is not None]
            assert done == sorted(done) and done[-1] == 3

            task = await api.task.get(task_id)
            report = f"/reports/{task_id}.txt"
            assert task.outputs == {"report": {"type": "team_file", "path": report}, "steps": 3}
            assert task.progress is not None and task.progress.message == "counting"
            assert (await api.task.get_info_by_id(task_id))["status"] == "started"
            assert (await api.task.poll(task_id, "ready", 1)).task.ready
            assert [t.id for t in await api.task.get_list(team_id, module_id)] == [task_id]
            running = api.task.iter_list(team_id, statuses=[Status.STARTED])
            assert [t.id async for t in running] == [task_id]
            assert [s.task_id for s in await api.app.get_sessions(team_id, module_id)] == [task_id]
            await api.file.download(team_id, report, tmp_path / "report.txt")
            assert (tmp_path / "report.txt").read_text() == f"report of task {task_id}\n"

            assert await api.app.stop(task_id) is Status.TERMINATING
            assert await api.app.wait(task_id, Status.STOPPED) is Status.STOPPED
            assert await api.task.get_status(task_id) is Status.STOPPED
            followed = [line.text async for line in api.task.follow_logs(task_id)]
            assert followed[:4] == ["step 1", "step 2", "step 3", "ready"]
            assert [line.text for line in await api.task.logs(task_id)] == followed
            page = await api.task.get_logs_page(task_id, after=0, limit=2)
            assert [line.text for line in page.items] == followed[:2]
            assert [t.status async for t in api.task.watch(task_id)] == [Status.STOPPED]

            failing = await api.app.start(
                agent_id=agent.id,
                module_id=module_id,
                workspace_id=workspace_id,
                params={"fail": True},
            )
            with pytest.raises(TaskFinishedWithError) as caught:
                await api.task.wait_watching(failing.task_id, Status.FINISHED)
            assert "giving up" in str(caught.value)
            assert await api.task.wait(failing.task_id, Status.ERROR) is Status.ERROR

    asyncio.run(main())

"""Team files: one file tree per team under ``files_dir/<team_id>/``, addressed by team paths.

What the routes and the task rules use, from modules of one job each:

- ``file_paths``: ``normalize``, the one gate every team path goes through (a 422 on the field);
- ``file_tree``: ``TeamFiles``, a team's tree on disk (no symbolic link followed, no path out
  of the team's root; reads, folders, removal, racing deletes);
- ``file_upload``: ``receive``, an upload that lands whole or not at all;
- ``file_move``: ``move_file``, a file moved to a free path whole or not at all;
- ``file_records``: the files' ids (a row per file beside the disk);
- here: who may read and write them.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from appyard.schemas.accounts import Role
from appyard.server.security import Principal
from appyard.server.services.accounts import team_role
from appyard.server.services.file_paths import normalize
from appyard.server.services.file_tree import TeamFiles
from appyard.server.services.file_upload import WRITE_CHUNK, receive

__all__ = ["WRITE_CHUNK", "TeamFiles", "authorize", "normalize", "receive"]


def authorize(s: Session, p: Principal, *, team_id: int, need: Role) -> None:
    """Viewers read, developers write; another team (or an agent token): 404."""
    team_role(s, p, team_id, need)

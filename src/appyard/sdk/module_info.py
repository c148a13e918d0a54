"""``ModuleInfo``: an app of the ecosystem as the SDK hands it out, with its argument helpers."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from appyard.domain.targets import TARGETS, type_matches
from appyard.errors import InvalidArgumentsError, InvalidTargetError, TargetRequiredError
from appyard.schemas.ecosystem import ModuleInfoWire
from appyard.schemas.manifest import Manifest

ECOSYSTEM = "ecosystem"


@dataclass
class ModuleInfo:
    """One module (app) of the catalog; ``config`` is the manifest of the version asked for.

    ``config`` stays the plain JSON object (the reference SDK's shape); ``manifest`` is the
    same parsed, which is what the helpers below read.
    """

    id: int
    slug: str
    name: str
    type: str = "app"
    config: dict[str, Any] = field(default_factory=dict)
    readme: str = ""
    repo: str | None = None
    github_repo: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_wire(cls, data: ModuleInfoWire | dict[str, Any]) -> ModuleInfo:
        """Build from the server's ``ModuleInfoWire`` (a model or its JSON dict)."""
        wire = data if isinstance(data, ModuleInfoWire) else ModuleInfoWire.model_validate(data)
        return cls(**{name: getattr(wire, name) for name in cls.__dataclass_fields__})

    @cached_property
    def manifest(self) -> Manifest:
        """``config`` parsed (once); ``ManifestError`` names a key that breaks a rule."""
        return Manifest.parse(self.config)

    @property
    def releases(self) -> list[dict[str, Any]]:
        """The module's releases, newest first (``meta["releases"]``)."""
        return list(self.meta.get("releases", []))

    @property
    def version(self) -> str | None:
        """The version ``config`` belongs to (``meta["version"]``), else the newest release's."""
        if self.meta.get("version"):
            return str(self.meta["version"])
        releases = self.releases
        return str(releases[0]["version"]) if releases else None

    def get_modal_window_arguments(self) -> dict[str, Any]:
        """The defaults of the app's options (``modal_template_state``), a fresh copy."""
        return copy.deepcopy(self.manifest.modal_template_state)

    def get_context_menu_targets(self) -> list[str]:
        """The targets the manifest declares, ``ecosystem`` included, in manifest order."""
        return self.manifest.targets

    def needs_target(self) -> bool:
        """True when the app can only start from a context menu (no ``ecosystem`` target)."""
        targets = self.get_context_menu_targets()
        return bool(targets) and ECOSYSTEM not in targets

    def arguments_help(self) -> None:
        """Print the app's options with their defaults and its targets (like ``--help``)."""
        print(self.arguments_help_text(), end="")

    def arguments_help_text(self) -> str:
        """The text :meth:`arguments_help` prints, for callers that render it themselves."""
        lines: list[str] = []
        modal_args = self.get_modal_window_arguments()
        if modal_args:
            lines.append(
                f"App '{self.name}' has additional options that can be configured manually "
                "in modal dialog window before running app. You can change them or keep "
                "defaults: "
            )
            lines.append(json.dumps(modal_args, sort_keys=True, indent=4))
        else:
            lines.append(
                f"App '{self.name}' has no additional options that can be configured manually "
                "in modal dialog window before running app."
            )
        targets = self.get_context_menu_targets()
        if targets:
            lines.append("App has to be started from the context menus:")
            for target in targets:
                known = TARGETS.get(target)
                lines.append(f"{target} : {known.help if known else 'empty description'}")
            lines.append(
                "It is needed to call get_arguments method with defined target argument "
                "(pass one of the values above)."
            )
        return "".join(line + "\n" for line in lines)

    def get_arguments(self, **target: Any) -> dict[str, Any]:
        """The state to start the app with: option defaults plus the one target's value.

        Returns a fresh dict on every call, so edits never leak into the next call.
        """
        params = self.get_modal_window_arguments()
        targets = self.get_context_menu_targets()
        if not target and self.needs_target():
            raise TargetRequiredError(
                "target argument has to be defined. "
                "Call method 'arguments_help' to print help info for developer"
            )
        if len(target) > 1:
            raise InvalidTargetError("Only one target is allowed")
        for name, value in target.items():
            if name not in targets:
                raise InvalidTargetError(
                    f"You passed {name}, but allowed only one of the targets: {targets}"
                )
            known = TARGETS.get(name)
            if known is None:
                raise InvalidTargetError(
                    f"App '{self.name}' allows target {name}, which this version of appyard "
                    f"does not know (known targets: {sorted(TARGETS)}). Upgrade appyard, or "
                    "start the app from another target."
                )
            if known.state_key is None or known.value_type is None:
                continue  # ecosystem: nothing to pass
            if not type_matches(value, known.value_type):
                raise InvalidArgumentsError(
                    f"Target {name} has value {value} of type {type(value)}. "
                    f"Allowed type is {known.value_type}"
                )
            if known.value_type is int:
                value = int(value)
            params[known.state_key] = value
        return params

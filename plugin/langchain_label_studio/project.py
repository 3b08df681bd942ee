"""Which Label Studio project a capture goes to."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .label_config import DEFAULT_CONFIGS, Layout, Mode, check_mode, parse_layout

DEFAULT_PROJECT_NAME = "LangChain-%Y-%m-%d"
#: Label Studio refuses longer project titles.
MAX_TITLE = 50


@dataclass(frozen=True)
class Project:
    """A Label Studio project, by name or id, with its capture mode.

    ``name`` may hold ``strftime`` codes (the default ``LangChain-%Y-%m-%d`` gives one
    project a day). A project is created on first delivery when no project of that
    title exists; an existing project is used as it is, after checking that its label
    config fits ``mode``.

    >>> Project("Support chats", mode="chat")
    """

    name: str = DEFAULT_PROJECT_NAME
    mode: Mode = "prompt"
    label_config: str | None = None
    id: int | None = None
    #: Share of sessions captured on this route (whole sessions; None: the middleware's rate).
    sample_rate: float | None = None
    layout: Layout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.sample_rate is not None and not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, not {self.sample_rate!r}")
        if self.mode not in DEFAULT_CONFIGS:
            raise ValueError(f"mode must be 'prompt' or 'chat', not {self.mode!r}")
        if self.id is None and len(self.title()) > MAX_TITLE:
            raise ValueError(
                f"Label Studio project titles have at most {MAX_TITLE} characters; {self.title()!r} has "
                f"{len(self.title())}"
            )
        layout = parse_layout(self.config)
        if self.label_config is not None:
            check_mode(layout, self.mode)
        object.__setattr__(self, "layout", layout)

    @property
    def config(self) -> str:
        """The label config used when the project is created."""
        return self.label_config if self.label_config is not None else DEFAULT_CONFIGS[self.mode]

    def title(self, when: datetime | None = None) -> str:
        """The project title at ``when`` (``strftime`` codes filled in)."""
        return (when or datetime.now()).strftime(self.name)

    def to_dict(self, when: datetime | None = None) -> dict[str, Any]:
        """The project as stored with a capture: title resolved, config kept."""
        return {"title": self.title(when), "id": self.id, "mode": self.mode, "label_config": self.label_config}

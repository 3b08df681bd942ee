"""Which Label Studio project a capture goes to."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .label_config import COMPARISON_CONFIGS, DEFAULT_CONFIGS, Layout, Mode, check_mode, parse_layout

DEFAULT_PROJECT_NAME = "LangChain-%Y-%m-%d"
#: Label Studio refuses longer project titles.
MAX_TITLE = 50
#: Appended to a project's name for the project of its challenger comparisons.
COMPARISON_SUFFIX = " (A/B)"


@dataclass(frozen=True)
class Project:
    """A Label Studio project, by name or id, with its capture mode.

    ``name`` may hold ``strftime`` codes (the default ``LangChain-%Y-%m-%d`` gives one
    project a day). A project is created on first delivery when no project of that
    title exists, with ``description`` and ``instructions`` (HTML shown to annotators
    before they label; sensible defaults per mode); an existing project is used as it
    is, after checking that its label config fits ``mode``.

    ``challenger``: another runnable answering a sampled share (``challenger_rate``) of
    the captured requests after their response was sent, in a bounded background pool
    (``challenger_concurrency`` threads, ``challenger_queue`` waiting at most; more are
    dropped and counted). Both answers go, in random order, to the project
    ``name + " (A/B)"`` for a side-by-side choice.

    >>> Project("Support chats", mode="chat")
    """

    name: str = DEFAULT_PROJECT_NAME
    mode: Mode = "prompt"
    label_config: str | None = None
    id: int | None = None
    #: Share of sessions captured on this route (whole sessions; None: the middleware's rate).
    sample_rate: float | None = None
    instructions: str | None = None
    description: str | None = None
    challenger: Any = field(default=None, compare=False, repr=False)
    challenger_rate: float = 0.1
    challenger_concurrency: int = 2
    challenger_queue: int = 100
    #: A project of challenger comparisons (made by :meth:`comparison`).
    comparison_of: str | None = None
    layout: Layout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.sample_rate is not None and not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, not {self.sample_rate!r}")
        if not 0.0 <= self.challenger_rate <= 1.0:
            raise ValueError(f"challenger_rate must be between 0 and 1, not {self.challenger_rate!r}")
        if self.challenger_concurrency < 1 or self.challenger_queue < 0:
            raise ValueError("challenger_concurrency must be at least 1 and challenger_queue at least 0")
        if self.mode not in DEFAULT_CONFIGS:
            raise ValueError(f"mode must be 'prompt' or 'chat', not {self.mode!r}")
        if self.id is None and len(self.title()) > MAX_TITLE:
            raise ValueError(
                f"Label Studio project titles have at most {MAX_TITLE} characters; {self.title()!r} has "
                f"{len(self.title())}"
            )
        if self.challenger is not None:
            if self.id is not None:
                raise ValueError("a challenger needs a project named by title (its comparisons go to 'name (A/B)')")
            if len(self.title()) + len(COMPARISON_SUFFIX) > MAX_TITLE:
                raise ValueError(
                    f"with a challenger, project titles have at most {MAX_TITLE - len(COMPARISON_SUFFIX)} characters "
                    f"(the comparisons go to {self.title() + COMPARISON_SUFFIX!r})"
                )
        layout = parse_layout(self.config)
        if self.label_config is not None:
            check_mode(layout, self.mode)
        object.__setattr__(self, "layout", layout)

    @property
    def config(self) -> str:
        """The label config used when the project is created."""
        if self.label_config is not None:
            return self.label_config
        return (COMPARISON_CONFIGS if self.comparison_of else DEFAULT_CONFIGS)[self.mode]

    def title(self, when: datetime | None = None) -> str:
        """The project title at ``when`` (``strftime`` codes filled in)."""
        return (when or datetime.now()).strftime(self.name)

    def comparison(self) -> Project:
        """The project the challenger's side-by-side comparisons go to."""
        return Project(self.name + COMPARISON_SUFFIX, mode=self.mode, comparison_of=self.name)

    def to_dict(self, when: datetime | None = None) -> dict[str, Any]:
        """The project as stored with a capture: title resolved, config kept (and texts only when set)."""
        spec: dict[str, Any] = {
            "title": self.title(when),
            "id": self.id,
            "mode": self.mode,
            "label_config": self.label_config,
        }
        if self.instructions is not None:
            spec["instructions"] = self.instructions
        if self.description is not None:
            spec["description"] = self.description
        if self.comparison_of is not None:
            spec["comparison"] = True
        return spec


#: What names a route's project: a name (prompt mode), an id, or a :class:`Project`.
ProjectLike = str | int | Project


def as_project(value: ProjectLike) -> Project:
    """A route's project: a name (prompt mode), an id, or a :class:`Project`."""
    if isinstance(value, Project):
        return value
    if isinstance(value, bool):
        raise TypeError("a project is a name, an id or a Project")
    if isinstance(value, int):
        return Project(id=value)
    return Project(name=str(value))

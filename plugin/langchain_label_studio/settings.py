"""Settings shared by the handler and the middleware, from arguments or the environment."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import DEFAULT_URL

OFF = {"off", "0", "false", "no"}


def default_state_dir() -> Path:
    """``$LABEL_STUDIO_STATE_DIR``, else ``$XDG_STATE_HOME/langchain-label-studio``.

    A relative ``XDG_STATE_HOME`` is ignored, as the XDG spec says (``~/.local/state`` is used):
    the outbox must not depend on the directory a process was started from.
    """
    if os.environ.get("LABEL_STUDIO_STATE_DIR"):
        return Path(os.environ["LABEL_STUDIO_STATE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME") or ""
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "langchain-label-studio"


@dataclass
class Settings:
    """Where captures go and how they get there.

    Records are committed to the outbox every ``commit_interval_s`` and delivered in
    batches of up to ``batch_size``, at least every ``delivery_interval_s`` while there
    is a backlog smaller than a batch.

    The outbox is a SQLite file in ``state_dir`` unless ``outbox`` is a PostgreSQL URL
    (``postgresql://user@host/db``): then every replica of the app shares it, in the
    database schema ``outbox_schema``.

    Arguments left as ``None`` are read from ``LABEL_STUDIO_URL`` (default
    ``http://localhost:8080``), ``LABEL_STUDIO_API_KEY``, ``LABEL_STUDIO_STATE_DIR``,
    ``LABEL_STUDIO_OUTBOX_URL`` and ``LABEL_STUDIO_OUTBOX_SCHEMA`` (default ``label_studio``).

    With ``deliver=False`` (``LABEL_STUDIO_DELIVERY=off``) this process only captures into the
    outbox, and a separate ``langchain-label-studio deliver`` process delivers.
    """

    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    state_dir: Path | str | None = None
    outbox: str | None = field(default=None, repr=False)
    outbox_schema: str | None = None
    deliver: bool | None = None
    batch_size: int = 500
    commit_interval_s: float = 0.05
    delivery_interval_s: float = 1.0
    timeout_s: float = 30.0
    max_buffer: int = 10_000
    max_outbox_bytes: int | None = 1 << 30
    exit_timeout_s: float = 5.0
    #: Built-in redaction of e-mails, phones, cards, IBANs and secrets (see ``redact``).
    redact: bool = True
    #: Extra redaction rules, ``{"NAME": regex}``: matches become ``<NAME>``.
    redact_patterns: Mapping[str, str] = field(default_factory=dict)
    #: ``before_capture(record)`` sees every record before it is stored; return the
    #: (changed) record, or None to drop it.
    before_capture: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        self.url = (self.url or os.environ.get("LABEL_STUDIO_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = self.api_key or os.environ.get("LABEL_STUDIO_API_KEY") or None
        self.state_dir = Path(self.state_dir).expanduser() if self.state_dir else default_state_dir()
        self.outbox = self.outbox or os.environ.get("LABEL_STUDIO_OUTBOX_URL") or None
        if self.deliver is None:
            self.deliver = os.environ.get("LABEL_STUDIO_DELIVERY", "on").strip().lower() not in OFF
        self.outbox_schema = self.outbox_schema or os.environ.get("LABEL_STUDIO_OUTBOX_SCHEMA") or "label_studio"
        if self.outbox is not None and not self.outbox.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                f"outbox must be a postgresql:// URL (or unset for the SQLite file in state_dir), not {self.outbox!r}"
            )

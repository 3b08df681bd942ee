"""Settings shared by the handler, the middleware and ``capture``: the one place that reads the
plugin's environment variables.

Arguments win over the environment; an empty variable counts as unset. Resolved settings have no
``None`` left but where absence means something (no API key, no PostgreSQL outbox).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .urls import strip_credentials

#: Where Label Studio is when ``LABEL_STUDIO_URL`` is unset.
DEFAULT_URL = "http://localhost:8080"


OFF = {"off", "0", "false", "no"}
DEFAULT_OUTBOX_SCHEMA = "label_studio"

#: Every environment variable the plugin reads (the command line and ``local`` read their own).
URL_ENV = "LABEL_STUDIO_URL"
API_KEY_ENV = "LABEL_STUDIO_API_KEY"
STATE_DIR_ENV = "LABEL_STUDIO_STATE_DIR"
OUTBOX_ENV = "LABEL_STUDIO_OUTBOX_URL"
OUTBOX_SCHEMA_ENV = "LABEL_STUDIO_OUTBOX_SCHEMA"
DELIVERY_ENV = "LABEL_STUDIO_DELIVERY"
PROJECT_ID_ENV = "LABEL_STUDIO_PROJECT_ID"
FEEDBACK_SECRET_ENV = "LABEL_STUDIO_FEEDBACK_SECRET"


def env(name: str) -> str | None:
    """The value of an environment variable; None when it is unset or empty."""
    return os.environ.get(name) or None


def default_state_dir() -> Path:
    """``$LABEL_STUDIO_STATE_DIR``, else ``$XDG_STATE_HOME/langchain-label-studio``.

    A relative ``XDG_STATE_HOME`` is ignored, as the XDG spec says (``~/.local/state`` is used):
    the outbox must not depend on the directory a process was started from.
    """
    configured = env(STATE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = env("XDG_STATE_HOME") or ""
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "langchain-label-studio"


@dataclass(init=False)
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

    Raises:
        ValueError: ``outbox`` is not a PostgreSQL URL.
    """

    #: Label Studio's address, without a trailing slash.
    url: str
    #: A Personal Access Token or legacy token; None when none is configured (delivery then
    #: reports the missing key and captures wait).
    api_key: str | None = field(repr=False)
    state_dir: Path
    #: A ``postgresql://`` URL, or None for the SQLite file in ``state_dir``.
    outbox: str | None = field(repr=False)
    outbox_schema: str
    deliver: bool
    # The defaults are those of ``__init__``'s arguments: written once, there.
    batch_size: int
    commit_interval_s: float
    delivery_interval_s: float
    timeout_s: float
    max_buffer: int
    max_outbox_bytes: int | None
    exit_timeout_s: float
    #: Built-in redaction of e-mails, phones, cards, IBANs and secrets (see ``redact``).
    redact: bool
    #: Extra redaction rules, ``{"NAME": regex}``: matches become ``<NAME>``.
    redact_patterns: Mapping[str, str]
    #: ``before_capture(record)`` sees every record before it is stored; return the
    #: (changed) record, or None to drop it.
    before_capture: Callable[[Any], Any] | None

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        outbox: str | None = None,
        outbox_schema: str | None = None,
        deliver: bool | None = None,
        batch_size: int = 500,
        commit_interval_s: float = 0.05,
        delivery_interval_s: float = 1.0,
        timeout_s: float = 30.0,
        max_buffer: int = 10_000,
        max_outbox_bytes: int | None = 1 << 30,
        exit_timeout_s: float = 5.0,
        redact: bool = True,
        redact_patterns: Mapping[str, str] | None = None,
        before_capture: Callable[[Any], Any] | None = None,
    ) -> None:
        self.url = (url or env(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or env(API_KEY_ENV)
        self.state_dir = Path(state_dir).expanduser() if state_dir else default_state_dir()
        self.outbox = outbox or env(OUTBOX_ENV)
        if self.outbox is not None and not self.outbox.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "outbox must be a postgresql:// URL (or unset for the SQLite file in state_dir), "
                f"not {strip_credentials(self.outbox)!r}"
            )
        if self.outbox is not None and self.outbox.split("://", 1)[1].split("/", 1)[0].count("@") > 1:
            raise ValueError("the outbox URL's password holds an '@': write it as %40")
        self.outbox_schema = outbox_schema or env(OUTBOX_SCHEMA_ENV) or DEFAULT_OUTBOX_SCHEMA
        if deliver is None:
            deliver = (env(DELIVERY_ENV) or "on").strip().lower() not in OFF
        self.deliver = deliver
        self.batch_size = batch_size
        self.commit_interval_s = commit_interval_s
        self.delivery_interval_s = delivery_interval_s
        self.timeout_s = timeout_s
        self.max_buffer = max_buffer
        self.max_outbox_bytes = max_outbox_bytes
        self.exit_timeout_s = exit_timeout_s
        self.redact = redact
        self.redact_patterns = dict(redact_patterns or {})
        self.before_capture = before_capture

    @classmethod
    def resolve(cls, settings: Settings | None, caller: str, **options: Any) -> Settings:
        """``settings``, or new settings from ``options`` (an option left as None is not given).

        ``caller`` names the component in errors.

        Raises:
            TypeError: an option that is not a field of :class:`Settings`, or options given
                together with ``settings`` (which would otherwise be ignored without a word).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(
                f"{caller}() got an unexpected keyword argument {unknown[0]!r}; "
                f"its options are the fields of Settings: {', '.join(sorted(known))}"
            )
        given = {name: value for name, value in options.items() if value is not None}
        if settings is None:
            return cls(**given)
        if given:
            raise TypeError(
                f"{caller}() got settings= together with {', '.join(sorted(given))}: "
                "pass them inside Settings(...), or leave settings= out"
            )
        return settings

    # -- values that are not settings of the pipeline, read here so that nothing else reads the env --
    @staticmethod
    def feedback_secret_from_env() -> str | None:
        """``LABEL_STUDIO_FEEDBACK_SECRET``: the middleware's feedback secret when none is passed."""
        return env(FEEDBACK_SECRET_ENV)

    @staticmethod
    def project_id_from_env() -> int | None:
        """``LABEL_STUDIO_PROJECT_ID``: the handler's project when none is passed.

        Raises:
            ValueError: the variable is set but not a project id.
        """
        value = env(PROJECT_ID_ENV)
        if value is None:
            return None
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"{PROJECT_ID_ENV} must be a Label Studio project id (a number), not {value!r}") from None

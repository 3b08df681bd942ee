"""Identifiers that come from outside (headers, run metadata): cleaned, bounded, and scoped.

A user or session id is shown to annotators and used as a key, so it must be printable
text: control and format characters (ESC, BEL, bidi overrides, zero-width marks) are
removed, lone surrogates replaced, and the result is cut to :data:`MAX_ID_CHARS`.

A chat session belongs to the identity that started it: :func:`session_key` scopes a
session id by its user, so another user sending the same session id gets a task of its own.
Outside the request a session is known only by :func:`session_ref`, a digest of that key.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

MAX_ID_CHARS = 256
#: Control (Cc), format (Cf), surrogate (Cs), private-use (Co) and unassigned (Cn) characters.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def clean_id(value: Any) -> str | None:
    """``value`` as a printable id of at most :data:`MAX_ID_CHARS` characters (None when empty)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if not text.isascii() or not text.isprintable():
        text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROPPED_CATEGORIES or ch == " ")
    text = text.strip()[:MAX_ID_CHARS]
    return text or None


def session_key(user_id: str | None, session_id: str | None) -> str | None:
    """The key a conversation is grouped by: its session id, within its user's namespace."""
    if session_id is None:
        return None
    if user_id is None:
        return session_id
    return f"{user_id}\x1f{session_id}"


def session_ref(user_id: str | None, session_id: str | None) -> str | None:
    """What a conversation is known by outside the request (the outbox, ``data.session_ref`` in
    its task, feedback records): a digest of its :func:`session_key`, so that neither id is stored.
    The task's ``user_id`` and ``session_id`` columns are redacted, and two users' ids can read
    the same there; their references never do."""
    key = session_key(user_id, session_id)
    return None if key is None else digest(key)


def digest(key: str) -> str:
    """The digest :func:`session_ref` keeps of a session key."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:32]


def as_ref(session: str) -> str:
    """A stored session as its reference: itself when it is one, else (a key a process of an older
    release wrote, with the ids in it) its digest."""
    return session if _REF.fullmatch(session) else digest(session)


_REF = re.compile(r"[0-9a-f]{32}")


def target_ref(target: Mapping[str, Any]) -> str | None:
    """The session a feedback record's target names: its ``session``, or for a target written
    by an older release (``user_id`` and ``session_id``), the reference of those ids."""
    if "session" in target or not target.get("session_id"):
        ref = target.get("session")
        return ref if isinstance(ref, str) and ref else None
    user = target.get("user_id")
    return session_ref(None if user is None else str(user), str(target["session_id"]))


#: Run ``configurable`` keys where LangGraph Server puts the authenticated user.
_AUTH_USER_ID = "langgraph_auth_user_id"
_AUTH_USER = "langgraph_auth_user"


def run_user(configurable: Mapping[str, Any], user_header: str) -> str | None:
    """The user of a LangGraph Server run: the authenticated user, else the ``user_header`` copy.

    Without a custom auth handler the server's user is anonymous (an empty identity), so the
    header the deployment copies into the run (``configurable_headers``) names the user.
    """
    user_id = configurable.get(_AUTH_USER_ID) or _identity(configurable.get(_AUTH_USER))
    if not user_id:
        user_id = configurable.get(user_header)
    return str(user_id) if user_id else None


def authenticated_name(user: Any) -> str | None:
    """The name of an app's user (Starlette's ``scope["user"]``): its ``identity``, else its
    ``display_name``; None when it is not authenticated. A property that raises names nobody."""
    try:
        if not getattr(user, "is_authenticated", False):
            return None
    except Exception:
        return None
    for attribute in ("identity", "display_name"):  # BaseUser's raise NotImplementedError
        try:
            name = _identity(user) if attribute == "identity" else getattr(user, attribute, None)
        except Exception:
            continue
        if name:
            return clean_id(name)
    return None


def _identity(user: Any) -> Any:
    if user is None:
        return None
    if isinstance(user, Mapping):
        return user.get("identity")
    try:
        return getattr(user, "identity", None)
    except NotImplementedError:
        return None

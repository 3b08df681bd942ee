"""URLs as they may be shown: in logs, the health view, the command line."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Query parameters that carry credentials (PostgreSQL URLs accept ``password=``).
_SECRET_PARAMS = re.compile(r"(?i)pass|secret|token|key|auth")


def public_url(url: str | None) -> str:
    """``url`` without its credentials: no ``user:password@``, no ``password=`` parameter, no fragment."""
    if not url:
        return ""
    try:
        parts = urlsplit(strip_credentials(url))
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    query = urlencode(
        [(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))  # a fragment could hold a cut password


def strip_credentials(text: str) -> str:
    """Free text (an error message) with the credentials of any URL in it removed."""
    return _USERINFO.sub(r"\1", text)


#: A URL's ``user:password@``: the characters RFC 3986 allows there, up to the last ``@`` before
#: any other (``/``, ``?``, ``#`` and quotes end it: it never reaches into a query or the text after).
#: The scheme is at most 32 characters long, so that text of any length is scanned in linear time.
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]{0,31}://)(?:[A-Za-z0-9\-._~%!$&'()*+,;=:]*@)+")

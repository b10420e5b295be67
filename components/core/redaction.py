"""Credentials out of URIs, before a URI reaches a message, a log, a parameter or a tag."""

from __future__ import annotations


def redact(uri: str) -> str:
    """``uri`` without any ``user:password@`` part."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password or parts.username:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return uri

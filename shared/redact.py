"""Keep secrets out of logs: mask the password in connection URLs."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/]*):(?P<password>[^@/]*)@", re.I)


def redact_url(url: str) -> str:
    """`redis://:s3cret@host:6379/0` → `redis://:***@host:6379/0`."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def redact_text(text: str) -> str:
    """Mask every URL password inside free text (error messages, tracebacks)."""
    return redact_url(text)

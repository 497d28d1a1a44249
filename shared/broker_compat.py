"""What greenq's Redis transport needs from the libraries and the server, checked at start.

The transport (shared/redis_transport.py) overrides kombu 5.7's Redis transport internals
(`_brpop_start`, `_brpop_read`, `QoS.restore_visible`, …) and uses `Producer.batch`; another
kombu minor may rename any of them, so outside the tested range a process stops at once with
what it found and what it needs, rather than failing on the first message.

The server: ZRANGE … BYSCORE REV (the sweep, as kombu 5.7's own) needs Redis 6.2; scripts that
write after TIME need effects replication (the default since Redis 5).
"""

from __future__ import annotations

import re
from importlib import metadata

from greenq.shared.errors import GreenqError

# The range pyproject.toml pins and CI tests: [lowest, first unsupported).
SUPPORTED_KOMBU = ((5, 7), (5, 8))
SUPPORTED_CELERY = ((5, 7), (5, 8))
MIN_REDIS_VERSION = (6, 2, 0)


class UnsupportedDependency(GreenqError):
    """A library or server version outside what greenq's transport is built and tested for."""


def parse_version(text: str) -> tuple[int, ...]:
    """The leading numeric release, `5.7.0rc1` → (5, 7, 0); () when there is none."""
    match = re.match(r"\s*(\d+(?:\.\d+)*)", text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def _shown(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def library_problem(name: str, found: str, supported: tuple[tuple[int, ...], tuple[int, ...]]) -> str | None:
    """Why `found` (a version string) is outside `supported`, or None when it is inside."""
    lowest, above = supported
    version = parse_version(found)
    if version and lowest <= version[: len(lowest)] < above:
        return None
    return (
        f"greenq needs {name}>={_shown(lowest)},<{_shown(above)} (its Redis transport extends that {name}'s "
        f"internals), found {name} {found or 'with no version'}: "
        f"pip install '{name}>={_shown(lowest)},<{_shown(above)}'"
    )


def redis_problem(found: str) -> str | None:
    """Why a server reporting `redis_version:<found>` cannot carry greenq's queues, or None."""
    version = parse_version(found)
    if version and version >= MIN_REDIS_VERSION:
        return None
    return (
        f"greenq needs Redis >= {_shown(MIN_REDIS_VERSION)} for its queues (ZRANGE BYSCORE, scripts that "
        f"write after TIME), found redis_version {found or '(not reported)'}: upgrade the broker"
    )


def check_libraries() -> None:
    """Raise UnsupportedDependency unless the installed kombu and Celery are in the tested range."""
    for name, supported in (("kombu", SUPPORTED_KOMBU), ("celery", SUPPORTED_CELERY)):
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            found = ""
        problem = library_problem(name, found, supported)
        if problem:
            raise UnsupportedDependency(problem)

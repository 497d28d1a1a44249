"""greenq's Redis Lua scripts: one `.lua` file per atomic step, each named for what it does.

Every file opens with a header: its KEYS, its ARGV, what it returns and the invariant it keeps.
A module registers the scripts it runs once per client and calls them by SHA (EVALSHA, never a
script's text with EVAL):

>>> renew = register(client, "renew_job_lease")
>>> renew(keys=[lease_key], args=[token, ttl_ms], client=pipe)   # in a pipeline, or client=client

Pass the client (or pipeline) at each call, as above: a wrapper around a client (a test's fault
injector) then sees the call. After Redis has lost its scripts (a restart, `SCRIPT FLUSH`), the
first call loads the script again: redis-py's `Script` retries on NOSCRIPT, and a pipeline sends
`SCRIPT EXISTS` (and `SCRIPT LOAD` for those missing) before its commands.
"""

from __future__ import annotations

import functools
import weakref
from importlib import resources
from typing import Any

from redis.commands.core import Script

# client → {script name → its Script}: a client that goes away takes its entries with it.
_registered: weakref.WeakKeyDictionary[Any, dict[str, Script]] = weakref.WeakKeyDictionary()


def names() -> list[str]:
    """Every script in this folder, by name (its file name without `.lua`), sorted."""
    folder = resources.files(__name__)
    return sorted(entry.name.removesuffix(".lua") for entry in folder.iterdir() if entry.name.endswith(".lua"))


@functools.cache
def source(name: str) -> str:
    """The text of `shared/scripts/<name>.lua`, read once per process (from an installed wheel too)."""
    path = resources.files(__name__).joinpath(f"{name}.lua")
    if not path.is_file():
        raise FileNotFoundError(f"no Lua script {name!r} in {__name__} (known: {', '.join(names())})")
    return path.read_text(encoding="utf-8")


def register(client: Any, name: str) -> Script:
    """The script `name` registered on `client` (a redis-py client, or a test's fake): once per client,
    later calls return the same object."""
    try:
        by_name = _registered.setdefault(client, {})
    except TypeError:  # a client that cannot be weakly referenced: register it every time
        return client.register_script(source(name))  # type: ignore[no-any-return]
    script = by_name.get(name)
    if script is None:
        script = by_name[name] = client.register_script(source(name))
    return script

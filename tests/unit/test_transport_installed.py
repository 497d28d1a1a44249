"""Processes that are not workers get greenq's reliable transport too (issue 20 review, finding T).

kombu's stock Redis transport sweeps `unacked` in any process that waits for a reply (a producer, the
scheduler, `greenq pool status`) and would requeue what live workers hold; make_celery installs greenq's in
every process that builds an app. Each check runs in a fresh interpreter: installing is process-wide, and
another test in this process may have installed it already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.redis_server import server

REPO = Path(__file__).resolve().parents[2]

# Builds the app as the producer client and the scheduler do, opens a channel on a real Redis, and prints
# the classes kombu chose.
PROBE = """
import json, sys
from greenq.shared.celery_app import make_celery
from greenq.shared.settings import Settings

settings = Settings(broker_url=sys.argv[1])
apps = {"producer": make_celery(settings, name="greenq-producer", producer=True),
        "scheduler": make_celery(settings, name="greenq-scheduler", producer=True)}
seen = {}
for role, app in apps.items():
    with app.connection_for_write() as connection:
        transport = type(connection.transport)
        channel = type(connection.default_channel) if sys.argv[2] == "open" else transport.Channel
        seen[role] = [f"{transport.__module__}:{transport.__name__}", f"{channel.__module__}:{channel.__name__}"]
print(json.dumps(seen))
"""


def classes_in_a_fresh_process(broker_url: str, open_channel: bool) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, broker_url, "open" if open_channel else "class"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


def test_a_producer_and_the_scheduler_talk_to_redis_through_greenqs_transport() -> None:
    seen = classes_in_a_fresh_process(server().url, open_channel=True)
    want = ["greenq.shared.redis_transport:Transport", "greenq.shared.redis_transport:Channel"]
    assert seen == {"producer": want, "scheduler": want}


@pytest.mark.parametrize(
    ("url", "transport"),
    [("rediss://127.0.0.1:1/0", "Transport"), ("sentinel://127.0.0.1:1;sentinel://127.0.0.1:2", "SentinelTransport")],
)
def test_tls_and_sentinel_urls_get_it_too(url: str, transport: str) -> None:
    seen = classes_in_a_fresh_process(url, open_channel=False)  # nothing listens there: the classes only
    channel = "SentinelChannel" if transport == "SentinelTransport" else "Channel"
    want = [f"greenq.shared.redis_transport:{transport}", f"greenq.shared.redis_transport:{channel}"]
    assert seen == {"producer": want, "scheduler": want}

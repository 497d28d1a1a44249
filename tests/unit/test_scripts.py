"""greenq's Lua scripts: one folder, each file used, each loads, and each goes out as EVALSHA.

Issue 21, item 4: the scripts were inlined across eight modules and most went out as raw EVAL (the
transport's fetch on every 50 ms idle poll sent its whole text). Redis counts each command it runs in
`INFO commandstats`, so a test can tell an EVAL from an EVALSHA on a real redis-server.
"""

from __future__ import annotations

import ast
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from greenq.shared import redis_transport, scripts
from greenq.shared.attempts import AttemptCounter
from greenq.shared.deadletter import DeadLetter, DeadLetterStore
from greenq.shared.local_redis import free_port, start_redis
from greenq.workers.edge.leases import JobLeases
from tests.unit.redis_server import real_redis_fixture, server

REPO = Path(__file__).resolve().parents[2]
real_redis = real_redis_fixture()
QUEUE = Queue("greenq.scripts", Exchange("greenq.scripts"), "greenq.scripts")


def calls(client: redis.Redis, command: str) -> int:
    """How many times the server has run `command` since it started (INFO commandstats)."""
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def connection(real_redis: redis.Redis) -> Iterator[Connection]:
    redis_transport.install()
    made = Connection(server().url, transport_options={"idle_poll_s": 0.05})
    try:
        yield made
    finally:
        made.release()


def drain_idle(connection: Connection, seconds: float) -> list[Any]:
    """Consume from an empty queue for `seconds`, as an idle worker does; returns what arrived."""
    got: list[Any] = []
    channel = connection.channel()
    channel.basic_consume(QUEUE.name, False, got.append, "scripts-consumer")
    QUEUE(channel).declare()
    try:
        connection.drain_events(timeout=seconds)
    except TimeoutError:
        pass
    return got


def test_the_transports_idle_poll_goes_out_as_evalsha(real_redis: redis.Redis, connection: Connection) -> None:
    evals, evalshas = calls(real_redis, "eval"), calls(real_redis, "evalsha")
    assert drain_idle(connection, 0.5) == []
    assert calls(real_redis, "eval") == evals, "the fetch went out as EVAL (its whole text, every poll)"
    assert calls(real_redis, "evalsha") >= evalshas + 3  # about ten polls in 0.5 s


def registered_names() -> dict[str, list[str]]:
    """Script name → the modules of greenq's packages that register it (`scripts.register(client, "name")`)."""
    found: dict[str, list[str]] = {}
    for package in ("shared", "producers", "workers"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "register"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "scripts"
                    and len(node.args) == 2
                    and isinstance(node.args[1], ast.Constant)
                ):
                    found.setdefault(str(node.args[1].value), []).append(str(path.relative_to(REPO)))
    return found


def test_every_script_file_is_registered_by_some_module_and_every_registered_name_has_a_file() -> None:
    registered = registered_names()
    assert sorted(registered) == scripts.names(), {
        "files no module registers": sorted(set(scripts.names()) - set(registered)),
        "names with no file": sorted(set(registered) - set(scripts.names())),
    }


def test_no_module_sends_a_script_text_with_eval() -> None:
    """Each script goes by its SHA: no `client.eval(script, ...)` and no "EVAL" command sent by hand."""
    sent_as_eval = []
    for package in ("shared", "producers", "workers"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    # A torch module's `.eval()` takes no argument; redis-py's `eval(script, numkeys, ...)` does.
                    by_text = node.func.attr == "eval" and bool(node.args)
                    if by_text or any(isinstance(a, ast.Constant) and a.value == "EVAL" for a in node.args):
                        sent_as_eval.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert sent_as_eval == []


@pytest.mark.parametrize("name", scripts.names())
def test_each_script_loads_on_a_real_redis(real_redis: redis.Redis, name: str) -> None:
    """SCRIPT LOAD compiles the script: a syntax error fails here, not on a worker."""
    text = scripts.source(name)
    assert text.startswith("-- "), "each script opens with its header: KEYS, ARGV, what it returns, what it keeps"
    for part in ("Returns", "Keeps"):
        assert f"-- {part}" in text, f"{name}.lua's header says nothing under {part!r}"
    assert real_redis.script_load(text) == scripts.register(real_redis, name).sha


def test_a_client_registers_each_script_once() -> None:
    client = redis.Redis.from_url(server().url)
    assert scripts.register(client, "renew_job_lease") is scripts.register(client, "renew_job_lease")
    with pytest.raises(FileNotFoundError, match="no Lua script 'renew_lease'"):
        scripts.register(client, "renew_lease")


# -- after Redis lost its scripts (SCRIPT FLUSH, a restart) the next call still works --------------------


def _publish(connection: Connection, body: dict[str, Any]) -> None:
    channel = connection.channel()
    connection.Producer(channel).publish(body, exchange=QUEUE.exchange, routing_key=QUEUE.routing_key, declare=[QUEUE])


def test_after_script_flush_a_single_call_and_a_pipeline_load_their_scripts_again(real_redis: redis.Redis) -> None:
    leases, attempts = JobLeases(real_redis, ttl_s=30), AttemptCounter(real_redis, ttl_s=60)
    token = leases.acquire("job-1")
    assert token is not None
    attempts.record(["job-1"])
    real_redis.script_flush()
    attempts.record(["job-2"])  # a pipeline: SCRIPT EXISTS, then SCRIPT LOAD, before its EVALSHAs
    assert attempts.attempts("job-2") == 1  # a single call: EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA
    real_redis.script_flush()
    leases.release("job-1", token)
    assert leases.holder("job-1") is None


def test_after_script_flush_the_transport_fetches_again(real_redis: redis.Redis, connection: Connection) -> None:
    """The idle poll sends EVALSHA by hand (kombu's poller reads the reply): NOSCRIPT there loads the script
    and the channel polls again at once. basic_get goes through redis-py's Script, which does the same."""
    _publish(connection, {"n": 1})
    _publish(connection, {"n": 2})
    channel = connection.channel()
    real_redis.script_flush()
    got = QUEUE(channel).get(no_ack=False)
    assert got is not None and got.payload == {"n": 1}
    got.ack()
    real_redis.script_flush()
    assert [message.payload for message in drain(connection, want=1)] == [{"n": 2}]


def drain(connection: Connection, want: int, timeout_s: float = 5.0) -> list[Any]:
    """Consume until `want` messages arrived (acking each), or `timeout_s` passed."""
    got: list[Any] = []

    def on_message(message: Any) -> None:
        got.append(message)
        message.ack()

    channel = connection.channel()
    channel.basic_consume(QUEUE.name, False, on_message, "scripts-drain")
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        try:
            connection.drain_events(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
    return got


def test_after_a_redis_restart_scripts_load_again() -> None:
    """A restart without persistence forgets every script (and the data); clients made before it reconnect,
    and their registered scripts load again on first use: single calls, pipelines and the transport's fetch."""
    own = start_redis(free_port(), databases=1)
    try:
        client = redis.Redis.from_url(own.url)
        leases, attempts = JobLeases(client, ttl_s=30), AttemptCounter(client, ttl_s=60)
        letters = DeadLetterStore(client)
        redis_transport.install()
        with Connection(own.url) as connection:
            _publish(connection, {"n": 0})
            channel = connection.channel()
            assert QUEUE(channel).get(no_ack=True) is not None
            assert leases.acquire("job-1") is not None and leases.lost(["job-1"]) == set()
            attempts.record(["job-1"])
            letters.add(DeadLetter(reason="before"))

            own.halt()
            own.start()
            assert client.script_exists(scripts.register(client, "renew_job_lease").sha) == [False]

            token = leases.acquire("job-1")
            assert token is not None
            assert leases._renew([("job-1", leases._held["job-1"])]) == {"job-1"}  # a pipeline of renewals
            attempts.record(["job-2"])
            assert attempts.attempts("job-2") == 1
            letters.add(DeadLetter(reason="after"))
            assert [letter.reason for letter in letters.list()] == ["after"]
            with Connection(own.url) as fresh:  # the old one's kombu state says bound; Redis lost the binding
                _publish(fresh, {"n": 1})
            got = QUEUE(channel).get(no_ack=True)  # the channel from before the restart
            assert got is not None and got.payload == {"n": 1}
    finally:
        own.stop()


def test_a_broker_that_refuses_script_load_leaves_the_poll_waiting_not_crashing(
    real_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL may allow EVALSHA but not SCRIPT LOAD: after a SCRIPT FLUSH the poll cannot load its script.
    It logs, waits its idle interval and tries again; the message stays queued (nothing is lost)."""
    real_redis.acl_setuser(
        "no-script-load", enabled=True, nopass=True, keys="*", channels="*", commands=["+@all", "-script|load"]
    )
    try:
        redis_transport.install()
        url = server().url.replace("redis://", "redis://no-script-load@")
        with Connection(server().url) as publisher:
            _publish(publisher, {"n": 1})
        real_redis.script_flush()
        with Connection(url, transport_options={"idle_poll_s": 0.05}) as connection:
            with caplog.at_level(logging.WARNING, logger="greenq.shared.redis_transport"):
                assert drain(connection, want=1, timeout_s=0.5) == []
        assert "loading the fetch script failed" in caplog.text
        assert real_redis.llen(QUEUE.name) == 1
    finally:
        real_redis.acl_deluser("no-script-load")

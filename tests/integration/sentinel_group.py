"""A Redis Sentinel group on loopback for fault tests: a master, a replica, and sentinels (quorum 1).

`redis-server <conf> --sentinel` is Sentinel; no other binary is needed. Every wait here is
bounded and checks the state Sentinel itself reports, so a test starts only once the replica
is in sync and every sentinel knows it (without that, a failover finds nothing to promote).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from greenq.shared.local_redis import LocalRedis, _binary

MASTER_NAME = "greenq-test"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 2000  # also how soon a split vote between the sentinels is retried (twice this)


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@dataclass
class SentinelGroup:
    """One master, one replica, `len(sentinel_ports)` sentinels, all on 127.0.0.1.

    >>> group = SentinelGroup(free_port(), free_port(), [free_port(), free_port()]).start()
    >>> group.url   # "sentinel://127.0.0.1:p1/0;sentinel://127.0.0.1:p2/0", master name MASTER_NAME
    >>> group.fail_over()
    >>> group.stop()
    """

    master_port: int
    replica_port: int
    sentinel_ports: list[int]
    name: str = MASTER_NAME
    servers: list[LocalRedis] = field(default_factory=list)
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)
    conf_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="greenq-sentinel-")))

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{port}/0" for port in self.sentinel_ports)

    def start(self) -> SentinelGroup:
        try:
            master = LocalRedis(self.master_port).start()
            self.servers.append(master)
            replica = LocalRedis(self.replica_port, extra_args=["--replicaof", "127.0.0.1", str(self.master_port)])
            self.servers.append(replica.start())
            _wait(lambda: self._link_up(self.replica_port), "the replica to sync with the master")
            for port in self.sentinel_ports:
                self.sentinels.append(self._start_sentinel(port))
            for port in self.sentinel_ports:
                _wait(lambda p=port: self._sees_replica(p), f"sentinel :{port} to see the master and its replica")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        conf = self.conf_dir / f"sentinel-{port}.conf"  # Sentinel rewrites its file: one each, writable
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.conf_dir}\n"
            f"sentinel monitor {self.name} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {self.name} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {self.name} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {self.name} 1\n"
        )
        log = (self.conf_dir / f"sentinel-{port}.log").open("wb")
        return subprocess.Popen([_binary(), str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT)

    @staticmethod
    def _client(port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)

    def _link_up(self, replica_port: int) -> bool:
        info = self._client(replica_port).info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def _sees_replica(self, sentinel_port: int) -> bool:
        client = self._client(sentinel_port)
        master = client.sentinel_master(self.name)
        if "s_down" in master["flags"] or "o_down" in master["flags"]:
            return False
        replicas = client.sentinel_slaves(self.name)
        return any(r["is_slave"] and not r["is_sdown"] and r["master-link-status"] == "ok" for r in replicas)

    def master_port_by(self, sentinel_port: int) -> int:
        """The master's port as one sentinel reports it."""
        _host, port = self._client(sentinel_port).sentinel_get_master_addr_by_name(self.name)
        return int(port)

    def wait_replicated(self, timeout_s: float = 10.0) -> None:
        """Return once the replica has every write the master took before this call.

        Replication is one ordered stream: when the replica acknowledges a write made here
        (WAIT), it has every write the master took before it, from any client.
        """
        client = self._client(self.master_port_by(self.sentinel_ports[0]))
        client.set("greenq:test:replication-mark", str(time.time()))
        acked = client.execute_command("WAIT", 1, int(timeout_s * 1000))
        if int(acked) < 1:
            raise TimeoutError(f"the replica did not acknowledge the master's writes within {timeout_s} s")

    def fail_over(self, timeout_s: float = 60.0) -> int:
        """SENTINEL FAILOVER, then wait until every sentinel names the new master and the old one is a replica."""
        old = self.master_port_by(self.sentinel_ports[0])
        self._client(self.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", self.name)
        new = self.wait_new_master(old, timeout_s)
        _wait(lambda: self._link_up(old), "the old master to become a replica of the new one", timeout_s)
        return new

    def kill_master(self, timeout_s: float = 60.0) -> int:
        """kill -9 the master; wait until every sentinel names the promoted replica. Returns its port."""
        old = self.master_port_by(self.sentinel_ports[0])
        for server in self.servers:
            if server.port == old and server.process is not None:
                server.process.kill()
                server.process.wait()
        return self.wait_new_master(old, timeout_s)

    def wait_new_master(self, old_port: int, timeout_s: float) -> int:
        def moved() -> bool:
            ports = {self.master_port_by(p) for p in self.sentinel_ports}
            if len(ports) != 1 or old_port in ports:
                return False
            role = self._client(ports.pop()).info("replication")["role"]
            return bool(role == "master")

        _wait(moved, "every sentinel to name a new master", timeout_s)
        return self.master_port_by(self.sentinel_ports[0])

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.conf_dir, ignore_errors=True)

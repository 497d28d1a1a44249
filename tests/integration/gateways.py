"""Real parts for gateway tests: a gateway process with test tenants, and callback endpoints on 127.0.0.1."""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from greenq.producers.gateway.tenants import Tenant, hash_key, new_key
from tests.integration.harness import Stack, free_port

# Tenant name → overrides of the Tenant defaults. "nosecret" has no callback secret; "tiny" may have 2 jobs unfinished.
DEFAULT_TENANTS: dict[str, dict[str, Any]] = {
    "acme": {},
    "globex": {},
    "slowpoke": {"rate_limit_per_s": 3},
    "nosecret": {"callback_secret": ""},
    "tiny": {"max_outstanding": 2},
}
LOOPBACK_ALLOWED = {"GREENQ_GATEWAY_CALLBACK_ALLOW": '["127.0.0.1/32"]'}


class Gateway:
    def __init__(self, s: Stack, tmp: Path, extra_env: dict[str, str] | None = None, name: str = "gateway") -> None:
        self.stack = s
        self.keys = {n: new_key() for n in DEFAULT_TENANTS}
        self.secrets = {n: DEFAULT_TENANTS[n].get("callback_secret", f"secret-{n}") for n in self.keys}
        tenants = [
            Tenant(
                name=n,
                key_sha256=hash_key(k),
                **{"rate_limit_per_s": 1000, **DEFAULT_TENANTS[n], "callback_secret": self.secrets[n]},
            ).model_dump()
            for n, k in self.keys.items()
        ]
        path = tmp / f"{name}-tenants.json"
        path.write_text(json.dumps({"tenants": tenants}))
        port = free_port()
        env = {"GREENQ_GATEWAY_TENANTS_FILE": str(path), "GREENQ_GATEWAY_MAX_BODY_BYTES": "65536", **(extra_env or {})}
        self.log = tmp / f"{name}.log"
        self.process = s.spawn(
            [sys.executable, "-m", "greenq.producers.cli", "gateway", "--host", "127.0.0.1", "--port", str(port)],
            self.log,
            env=env,
        )
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=90)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.2)
        raise RuntimeError(self.log.read_text()[-2000:])

    def auth(self, tenant: str = "acme") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}


@dataclass
class Delivery:
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic() when it arrived


class Receiver:
    """A callback endpoint on 127.0.0.1 that records each POST, then answers as `behave(n)` says for the n-th:
    "ok" (204), "hang" (never answers), "drip" (a status-line byte a second, never ending) or "redirect:URL"."""

    def __init__(self, behave: Callable[[int], str] = lambda n: "ok") -> None:
        self.behave = behave
        self.deliveries: list[Delivery] = []
        self.open_now = 0
        self.open_max = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.open_now += 1
            self.open_max = max(self.open_max, self.open_now)
        try:
            conn.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            while len(body) < int(headers.get("content-length", "0")):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            with self._lock:
                n = len(self.deliveries)
                self.deliveries.append(Delivery(headers, body, time.monotonic()))
            action = self.behave(n)
            if action == "ok":
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            elif action.startswith("redirect:"):
                location = action.split(":", 1)[1]
                conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())
            elif action == "drip":
                conn.sendall(b"HTTP/1.1 200 O")  # the status line itself never ends
                while not self._closed.is_set():
                    if select.select([conn], [], [], 1.0)[0] and not conn.recv(1):
                        return  # the sender hung up
                    conn.sendall(b"K")
            else:  # hang
                self._closed.wait()
        except OSError:
            pass
        finally:
            conn.close()
            with self._lock:
                self.open_now -= 1

    def job_ids(self) -> list[str]:
        with self._lock:
            return [d.headers.get("x-greenq-job-id", "") for d in self.deliveries]

    def close(self) -> None:
        self._closed.set()
        self._sock.close()

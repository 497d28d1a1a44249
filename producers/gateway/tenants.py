"""Tenants and their API keys. Keys are random tokens; only their SHA-256 is stored.

The tenants file (`GREENQ_GATEWAY_TENANTS_FILE`) is JSON:

    {"tenants": [{"name": "acme", "key_sha256": "…", "rate_limit_per_s": 50,
                  "max_outstanding": 5000, "callback_secret": "…"}]}

`greenq gateway-key NAME` makes a key, prints it once, and prints the entry to add.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

KEY_PREFIX = "gq_"


class Tenant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_.-]+$")
    key_sha256: str = Field(min_length=64, max_length=64, pattern=r"^[0-9a-f]+$")
    rate_limit_per_s: int = Field(default=50, ge=1, le=100_000)
    max_outstanding: int = Field(default=5000, ge=1, le=10_000_000)
    callback_secret: str = Field(default="", max_length=256)


class TenantsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenants: list[Tenant]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class TenantRegistry:
    def __init__(self, tenants: list[Tenant]) -> None:
        self._by_hash = {t.key_sha256: t for t in tenants}

    @classmethod
    def load(cls, path: Path) -> TenantRegistry:
        return cls(TenantsFile.model_validate(json.loads(path.read_text())).tenants)

    def authenticate(self, key: str) -> Tenant | None:
        digest = hash_key(key)
        for stored, tenant in self._by_hash.items():  # compare every entry: no early exit on a match
            if hmac.compare_digest(stored, digest):
                return tenant
        return None

    def secrets(self) -> dict[str, str]:
        """Callback signing secret per tenant name."""
        return {t.name: t.callback_secret for t in self._by_hash.values()}

    def __len__(self) -> int:
        return len(self._by_hash)

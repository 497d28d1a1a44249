"""Gateway logic that needs no server: key hashing, tenant lookup, callback signatures."""

from __future__ import annotations

import time

from producers.gateway.callbacks import sign, verify_signature
from producers.gateway.tenants import Tenant, TenantRegistry, hash_key, new_key


def test_keys_are_random_and_only_their_hash_is_kept() -> None:
    key = new_key()
    assert key.startswith("gq_") and len(key) > 40 and new_key() != key
    tenant = Tenant(name="acme", key_sha256=hash_key(key))
    registry = TenantRegistry([tenant, Tenant(name="globex", key_sha256=hash_key(new_key()))])
    assert registry.authenticate(key) == tenant
    assert registry.authenticate(key + "x") is None
    assert key not in tenant.model_dump_json()


def test_signatures_verify_and_reject_tampering_and_staleness() -> None:
    body = b'{"job_id": "j1", "status": "succeeded"}'
    now = int(time.time())
    signature = sign("s3cret", now, body)
    assert signature.startswith("sha256=")
    assert verify_signature("s3cret", str(now), body, signature)
    assert not verify_signature("s3cret", str(now), body + b" ", signature)
    assert not verify_signature("other", str(now), body, signature)
    assert not verify_signature("s3cret", str(now - 3600), body, sign("s3cret", now - 3600, body))
    assert not verify_signature("s3cret", "not-a-time", body, signature)

"""Idempotency keys in two phases (claim, then confirm or release), on a fake Redis."""

from __future__ import annotations

import pytest

from producers import idempotency
from producers.idempotency import ClaimState, IdempotencyStore, job_id_for_key
from shared.errors import IdempotencyConflict
from tests.unit.fake_redis import Clock, FakeRedis

PAYLOAD = {"customer_message": "Where is my parcel?"}


@pytest.fixture
def store(fake: FakeRedis) -> IdempotencyStore:
    return IdempotencyStore(fake, ttl_s=3600)


def test_a_key_maps_to_one_job_id_whoever_claims_it() -> None:
    assert job_id_for_key("reply", "ticket-1") == job_id_for_key("reply", "ticket-1")
    assert job_id_for_key("reply", "ticket-1") != job_id_for_key("reply", "ticket-2")
    assert job_id_for_key("reply", "ticket-1") != job_id_for_key("strategy", "ticket-1")


def test_claim_then_confirm_then_the_key_names_the_enqueued_job(store: IdempotencyStore, fake: FakeRedis) -> None:
    mine = store.claim("reply", "ticket-1", PAYLOAD)
    assert mine.state is ClaimState.MINE
    assert fake.ttl(mine.redis_key) == pytest.approx(idempotency.PENDING_TTL_S)
    store.confirm([mine])
    again = store.claim("reply", "ticket-1", PAYLOAD)
    assert again.state is ClaimState.ENQUEUED
    assert again.job_id == mine.job_id
    assert fake.ttl(mine.redis_key) == pytest.approx(3600)


def test_a_pending_claim_is_busy_for_others_until_it_settles(store: IdempotencyStore) -> None:
    mine = store.claim("reply", "ticket-1", PAYLOAD)
    theirs = store.claim("reply", "ticket-1", PAYLOAD)
    assert theirs.state is ClaimState.BUSY
    store.confirm([mine])
    store.wait_settled(theirs)  # returns at once: the key changed
    assert store.claim("reply", "ticket-1", PAYLOAD).state is ClaimState.ENQUEUED


def test_the_same_key_with_another_payload_is_a_conflict(store: IdempotencyStore) -> None:
    store.confirm([store.claim("reply", "ticket-1", PAYLOAD)])
    with pytest.raises(IdempotencyConflict, match="ticket-1"):
        store.claim("reply", "ticket-1", {"customer_message": "Something else"})
    # A pending claim conflicts the same way.
    store.claim("reply", "ticket-2", PAYLOAD)
    with pytest.raises(IdempotencyConflict):
        store.claim("reply", "ticket-2", {"customer_message": "Something else"})


def test_a_released_claim_can_be_claimed_again(store: IdempotencyStore) -> None:
    first = store.claim("reply", "ticket-1", PAYLOAD)
    store.release([first])
    second = store.claim("reply", "ticket-1", PAYLOAD)
    assert second.state is ClaimState.MINE
    assert second.value != first.value  # a claim token of its own


def test_release_and_confirm_touch_only_the_callers_own_claim(store: IdempotencyStore, clock: Clock) -> None:
    stale = store.claim("reply", "ticket-1", PAYLOAD)
    clock.now += idempotency.PENDING_TTL_S + 1  # the first producer stalled; its claim expired
    fresh = store.claim("reply", "ticket-1", PAYLOAD)
    assert fresh.state is ClaimState.MINE
    store.release([stale])
    store.confirm([stale])
    assert store.claim("reply", "ticket-1", PAYLOAD).state is ClaimState.BUSY  # still the fresh claim
    store.confirm([fresh])
    assert store.claim("reply", "ticket-1", PAYLOAD).state is ClaimState.ENQUEUED


def test_confirm_sets_a_claim_that_expired_meanwhile(store: IdempotencyStore, clock: Clock) -> None:
    mine = store.claim("reply", "ticket-1", PAYLOAD)
    clock.now += idempotency.PENDING_TTL_S + 1  # the push took longer than the pending TTL
    store.confirm([mine])  # the job is on the broker: the key must name it
    assert store.claim("reply", "ticket-1", PAYLOAD).state is ClaimState.ENQUEUED

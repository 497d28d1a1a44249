"""Idempotency keys in two phases (claim, then confirm or release), on a real redis-server: the claim is a
Lua script that decides on Redis' clock."""

from __future__ import annotations

import time

import pytest
import redis

from greenq.producers import idempotency
from greenq.producers.idempotency import (
    IdempotencyStore,
    ReservationState,
    ReservationTicket,
    fingerprint,
    job_id_for_key,
)
from greenq.shared.errors import IdempotencyConflict
from tests.unit.redis_server import real_redis_fixture

PAYLOAD = {"customer_message": "Where is my parcel?"}
OTHER = {"customer_message": "Something else"}
PENDING_S = 0.3  # a short pending TTL, so a stale claim needs no 30 s wait
KEY = "greenq:idem:reply:ticket-1"

real_redis = real_redis_fixture()


@pytest.fixture
def store(real_redis: redis.Redis) -> IdempotencyStore:
    return IdempotencyStore(real_redis, ttl_s=3600, pending_ttl_s=PENDING_S)


def _let_claims_go_stale() -> None:
    time.sleep(PENDING_S + 0.2)


def test_a_key_names_one_job_for_its_life_and_a_new_one_when_claimed_anew(
    store: IdempotencyStore, real_redis: redis.Redis
) -> None:
    first = store.reserve("reply", "ticket-1", PAYLOAD)
    store.confirm([first])
    assert store.reserve("reply", "ticket-1", PAYLOAD).job_id == first.job_id
    real_redis.delete(KEY)  # what its TTL does one TTL after submit, while the job's result lives on
    for payload in (OTHER, PAYLOAD):
        again = store.reserve("reply", "ticket-1", payload)
        assert again.state is ReservationState.MINE
        assert again.job_id not in (first.job_id, job_id_for_key("reply", "ticket-1"))
        store.release([again])
    assert store.reserve("reply", "ticket-2", PAYLOAD).job_id != first.job_id


def test_claim_then_confirm_then_the_key_names_the_enqueued_job(
    store: IdempotencyStore, real_redis: redis.Redis
) -> None:
    mine = store.reserve("reply", "ticket-1", PAYLOAD)
    assert mine.state is ReservationState.MINE
    store.confirm([mine])
    again = store.reserve("reply", "ticket-1", PAYLOAD)
    assert again.state is ReservationState.ENQUEUED
    assert again.job_id == mine.job_id
    assert real_redis.ttl(mine.redis_key) == pytest.approx(3600, abs=2)


def test_a_pending_claim_is_busy_for_others_until_it_settles(store: IdempotencyStore) -> None:
    mine = store.reserve("reply", "ticket-1", PAYLOAD)
    theirs = store.reserve("reply", "ticket-1", PAYLOAD)
    assert theirs.state is ReservationState.BUSY and theirs.job_id == mine.job_id
    assert 0 < theirs.settles_in_s <= PENDING_S
    store.confirm([mine])
    started = time.monotonic()
    store.wait_settled(theirs)  # returns at once: the key changed
    assert time.monotonic() - started < PENDING_S
    assert store.reserve("reply", "ticket-1", PAYLOAD).state is ReservationState.ENQUEUED


def test_the_same_key_with_another_payload_is_a_conflict(store: IdempotencyStore) -> None:
    store.confirm([store.reserve("reply", "ticket-1", PAYLOAD)])
    with pytest.raises(IdempotencyConflict, match="ticket-1"):
        store.reserve("reply", "ticket-1", OTHER)
    # A pending claim conflicts the same way.
    store.reserve("reply", "ticket-2", PAYLOAD)
    with pytest.raises(IdempotencyConflict):
        store.reserve("reply", "ticket-2", OTHER)


def test_a_released_claim_can_be_claimed_again(store: IdempotencyStore) -> None:
    first = store.reserve("reply", "ticket-1", PAYLOAD)
    store.release([first])
    second = store.reserve("reply", "ticket-1", PAYLOAD)
    assert second.state is ReservationState.MINE
    assert second.value != first.value  # a claim token of its own


def test_a_stale_claim_is_taken_over_keeping_its_job_id_for_the_same_payload(store: IdempotencyStore) -> None:
    stalled = store.reserve("reply", "ticket-1", PAYLOAD)  # its producer may have pushed the job, then died
    _let_claims_go_stale()
    taken = store.reserve("reply", "ticket-1", PAYLOAD)
    assert taken.state is ReservationState.MINE
    assert taken.job_id == stalled.job_id  # pushed twice, it is still one job
    store.confirm([taken])
    assert store.reserve("reply", "ticket-1", PAYLOAD).state is ReservationState.ENQUEUED


def test_a_stale_claim_taken_over_for_another_payload_gets_a_new_job_id(store: IdempotencyStore) -> None:
    stalled = store.reserve("reply", "ticket-1", PAYLOAD)
    _let_claims_go_stale()
    taken = store.reserve("reply", "ticket-1", OTHER)
    assert taken.state is ReservationState.MINE and taken.job_id != stalled.job_id


def test_release_and_confirm_touch_only_the_callers_own_claim(store: IdempotencyStore) -> None:
    stale = store.reserve("reply", "ticket-1", PAYLOAD)
    _let_claims_go_stale()  # the first producer stalled; another took the key over
    fresh = store.reserve("reply", "ticket-1", PAYLOAD)
    assert fresh.state is ReservationState.MINE
    store.release([stale])
    store.confirm([stale])
    assert store.reserve("reply", "ticket-1", PAYLOAD).state is ReservationState.BUSY  # still the fresh claim
    store.confirm([fresh])
    assert store.reserve("reply", "ticket-1", PAYLOAD).state is ReservationState.ENQUEUED


def test_a_busy_wait_ends_when_the_other_claim_goes_stale(store: IdempotencyStore) -> None:
    store.reserve("reply", "ticket-1", PAYLOAD)
    theirs = store.reserve("reply", "ticket-1", PAYLOAD)
    started = time.monotonic()
    store.wait_settled(theirs)  # the other producer never confirms
    assert PENDING_S / 2 < time.monotonic() - started < PENDING_S + 5
    assert store.reserve("reply", "ticket-1", PAYLOAD).state is ReservationState.MINE


def test_confirm_sets_a_claim_that_vanished_meanwhile(store: IdempotencyStore, real_redis: redis.Redis) -> None:
    mine = store.reserve("reply", "ticket-1", PAYLOAD)
    real_redis.delete(mine.redis_key)  # a Redis restart without persistence
    store.confirm([mine])  # the job is on the broker: the key must name it
    again = store.reserve("reply", "ticket-1", PAYLOAD)
    assert again.state is ReservationState.ENQUEUED and again.job_id == mine.job_id


def test_keys_written_before_job_ids_were_stored_still_name_their_jobs(
    store: IdempotencyStore, real_redis: redis.Redis
) -> None:
    print_ = fingerprint("reply", PAYLOAD)
    real_redis.set(KEY, print_, ex=3600)
    confirmed = store.reserve("reply", "ticket-1", PAYLOAD)
    assert confirmed.state is ReservationState.ENQUEUED and confirmed.job_id == job_id_for_key("reply", "ticket-1")
    with pytest.raises(IdempotencyConflict):
        store.reserve("reply", "ticket-1", OTHER)

    real_redis.set(KEY, f"pending:{print_}:oldtoken", px=int(PENDING_S * 1000))
    busy = store.reserve("reply", "ticket-1", PAYLOAD)
    assert busy.state is ReservationState.BUSY and 0 < busy.settles_in_s <= PENDING_S
    with pytest.raises(IdempotencyConflict):
        store.reserve("reply", "ticket-1", OTHER)
    store.wait_settled(busy)  # it expires by itself
    assert store.reserve("reply", "ticket-1", PAYLOAD).state is ReservationState.MINE


def test_the_default_pending_ttl_is_read_when_the_store_is_made(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency, "PENDING_TTL_S", 7)  # as a test that shortens it does
    store = IdempotencyStore(real_redis, ttl_s=3600)
    store.reserve("reply", "ticket-1", PAYLOAD)
    assert 6 < store.reserve("reply", "ticket-1", PAYLOAD).settles_in_s <= 7


def test_a_claim_retried_with_its_ticket_is_mine_again(store: IdempotencyStore) -> None:
    ticket = ReservationTicket.new()
    first = store.reserve("reply", "ticket-1", PAYLOAD, ticket)  # say its reply was lost
    again = store.reserve("reply", "ticket-1", PAYLOAD, ticket)
    assert again.state is ReservationState.MINE and again.value == first.value and again.job_id == ticket.job_id
    assert store.reserve("reply", "ticket-1", PAYLOAD).state is ReservationState.BUSY  # anyone else waits
    store.confirm([again])
    assert store.reserve("reply", "ticket-1", PAYLOAD, ticket).state is ReservationState.ENQUEUED


def test_an_abandoned_claim_is_taken_over_at_once_keeping_its_job_id_and_ttl(
    store: IdempotencyStore, real_redis: redis.Redis
) -> None:
    long = IdempotencyStore(real_redis, ttl_s=3600)  # the default 30 s pending TTL: no waiting it out
    pushed = long.reserve("reply", "ticket-1", PAYLOAD)  # its push raised: the broker may have the job
    long.abandon([pushed])
    assert real_redis.ttl(pushed.redis_key) == pytest.approx(3600, abs=2)
    taken = long.reserve("reply", "ticket-1", PAYLOAD)
    assert taken.state is ReservationState.MINE and taken.job_id == pushed.job_id
    long.abandon([pushed])  # only the caller's own claim: the takeover's stays fresh
    assert long.reserve("reply", "ticket-1", PAYLOAD).state is ReservationState.BUSY
    long.abandon([taken])
    other = long.reserve("reply", "ticket-1", OTHER)
    assert other.state is ReservationState.MINE and other.job_id != pushed.job_id

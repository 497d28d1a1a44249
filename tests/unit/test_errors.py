from greenq.shared.errors import (
    BatchBrokerUnavailable,
    BatchIdempotencyConflict,
    BrokerUnavailable,
    IdempotencyConflict,
    NotAllEnqueued,
)


def test_not_all_enqueued_names_each_job_and_why() -> None:
    down = BrokerUnavailable("could not reach the broker")
    taken = IdempotencyConflict("idempotency key 'k' was already used")
    error = BatchBrokerUnavailable(10, {0: "a", 1: "b", 2: "c", 4: "e"}, {3: taken, **{i: down for i in range(5, 10)}})
    assert isinstance(error, NotAllEnqueued) and isinstance(error, BrokerUnavailable)
    assert str(error).startswith("4 of 10 jobs were enqueued; the other 6 were not")
    assert "job 3: idempotency key 'k' was already used" in str(error)
    assert "jobs 5-9: could not reach the broker" in str(error)


def test_a_conflict_in_a_batch_is_still_an_idempotency_conflict() -> None:
    error = BatchIdempotencyConflict(3, {0: "a", 2: "c"}, {1: IdempotencyConflict("taken")})
    assert isinstance(error, IdempotencyConflict) and not isinstance(error, BrokerUnavailable)
    assert error.enqueued == {0: "a", 2: "c"} and list(error.failed) == [1]

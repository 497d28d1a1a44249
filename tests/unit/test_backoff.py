"""The producer's result-backend calls: retried like a push, then an error that names the backend."""

from __future__ import annotations

import pytest
import redis

from greenq.producers.backoff import backoff_delays_s, call_backend
from greenq.shared.errors import BrokerUnavailable, ResultBackendUnavailable

URL = "redis://:s3cret@backend.internal:6380/0"


def test_a_blip_is_ridden_out_with_the_push_back_off() -> None:
    slept: list[float] = []
    answers = iter([redis.ConnectionError("refused"), redis.TimeoutError("slow"), "ok"])

    def call() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert call_backend(call, URL, sleep=slept.append) == "ok"
    assert slept == backoff_delays_s()[:2]


def test_a_backend_that_stays_down_is_named_with_its_password_masked() -> None:
    slept: list[float] = []

    def down() -> None:
        raise redis.ConnectionError("Error 111 connecting to backend.internal:6380. Connection refused.")

    with pytest.raises(ResultBackendUnavailable) as raised:
        call_backend(down, URL, sleep=slept.append)
    assert isinstance(raised.value, BrokerUnavailable)  # existing handlers (the gateway's 503) still apply
    assert "result backend at redis://:***@backend.internal:6380/0 after retries" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    assert slept == [0.2, 0.7, 1.2, 1.7]  # about 4 s in all, as a push to the broker


def test_an_error_waiting_cannot_cure_is_raised_at_once() -> None:
    slept: list[float] = []

    def refused() -> None:
        raise redis.ResponseError("NOPERM this user has no permissions to run the 'evalsha' command")

    with pytest.raises(ResultBackendUnavailable, match="result backend at redis://:\\*\\*\\*@backend.internal"):
        call_backend(refused, URL, sleep=slept.append)
    assert slept == []

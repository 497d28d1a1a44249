"""Every Redis key name greenq reads or writes, in one place (arq's `constants.py`).

Names ending in `_PREFIX` are followed by the part named in their comment. The strings are
part of the stored data's format: changing one orphans what a deployed Redis already holds.
Queue and task names are in `shared/queues.py`; Celery's result keys belong to Celery.
"""

from __future__ import annotations

# Jobs, on the result backend.
IDEMPOTENCY_KEY_PREFIX = "greenq:idem:"  # + job type:key → its reservation, then its job id (producers/idempotency.py)
START_MARK_KEY_PREFIX = "greenq:claim:"  # + job id → its start mark: "received" or "cancelled" (shared/start_marks.py)
ATTEMPTS_KEY_PREFIX = "greenq:attempts:"  # + job id → unfinished attempts (shared/attempts.py)
LEASE_KEY_PREFIX = "greenq:lease:"  # + job id → the worker computing it (workers/edge/leases.py)
TOKENS_KEY_PREFIX = "greenq:tokens:"  # + job id → stream of its text as it decodes (shared/token_stream.py)
DEAD_LETTER_KEY = "greenq:dead"  # hash: record id → JSON record (shared/deadletter.py)
DEAD_LETTER_INDEX_KEY = "greenq:dead:at"  # sorted set: record id scored by when it was written (the bounds)
DEAD_LETTER_DROPPED_KEY = "greenq:dead:dropped"  # records the store's bounds dropped, oldest first

# Deferred jobs, on the result backend (shared/deferral.py).
DEFERRED_JOB_KEY = "greenq:deferred:job"  # hash: job id → JSON record (envelope, release_by, …)
DEFERRED_DUE_KEY = "greenq:deferred:due"  # sorted set: job id scored by the latest time to release it
DEFERRED_RELEASING_KEY = "greenq:deferred:releasing"  # sorted set: job id scored by its release hold's end
DEFERRED_HOLDER_KEY = "greenq:deferred:holder"  # hash: job id under a release hold → that hold's token
DEFERRED_COUNT_KEY = "greenq:deferred:count"  # hash: job type → jobs deferred and not yet released
DEFERRED_SLOT_KEY_PREFIX = "greenq:deferred:slot:"  # + slot start (Unix s) → jobs released in that slot
DEFERRED_PLAN_KEY = "greenq:deferred:plan"  # JSON: the latest plan (jobs per slot, in deadline order)
DEFERRED_ARRIVALS_KEY_PREFIX = "greenq:deferred:arrivals:"  # + slot start → hash: window (slots) → jobs deferred
CARBON_NOW_KEY = "greenq:carbon:now"  # JSON: the grid intensity the scheduler last read, for receipts

# The reliable fetch, on the broker (shared/redis_transport.py).
UNACKED_KEY = "unacked"  # kombu's own hash of reserved, unacknowledged messages (its transport default)
UNACKED_OWNER_KEY = "greenq:unacked:owner"  # hash: delivery tag → consumer holding it
INFLIGHT_KEY_PREFIX = "greenq:inflight:"  # + consumer id → set of the delivery tags it holds
CONSUMERS_KEY = "greenq:consumers"  # sorted set: consumer id scored by its last heartbeat

# The gateway (producers/gateway/).
OWNER_KEY_PREFIX = "greenq:owner:"  # + job id → tenant name, for the result TTL
RATE_KEY_PREFIX = "greenq:rate:"  # + tenant:second → requests counted in that second
OUTSTANDING_KEY_PREFIX = "greenq:outstanding:"  # + tenant → sorted set of job ids scored by submission time
CALLBACK_DUE_KEY = "greenq:callbacks:due"  # sorted set: job id scored by when to look at it next (or an attempt's end)
CALLBACK_JOB_KEY_PREFIX = "greenq:callbacks:job:"  # + job id → hash: url, tenant, attempts, result once seen
CALLBACK_WAITING_KEY = "greenq:callbacks:waiting"  # sorted set: job id (no result yet) scored by its next sweep
LEGACY_PENDING_KEY = "greenq:callbacks:pending"  # before due/job: a set of job ids, moved over at start
LEGACY_CALLBACK_KEY_PREFIX = "greenq:callback:"  # + job id → JSON record, moved over at start

# Fault tests only (GREENQ_CHAOS__LOG_COMPUTATIONS): a list of "<job id> <pid>", one per computation.
COMPUTATIONS_KEY = "greenq:chaos:computations"

"""Every Redis key the gateway writes, in one place (the job keys Celery and the workers own live elsewhere)."""

OWNER_KEY_PREFIX = "greenq:owner:"  # + job id → tenant name, for the result TTL
RATE_KEY_PREFIX = "greenq:rate:"  # + tenant:second → requests counted in that second
OUTSTANDING_KEY_PREFIX = "greenq:outstanding:"  # + tenant → sorted set of job ids scored by submission time
CALLBACK_DUE_KEY = "greenq:callbacks:due"  # sorted set: job id scored by when to look at it next (a lease, if claimed)
CALLBACK_JOB_KEY_PREFIX = "greenq:callbacks:job:"  # + job id → hash: url, tenant, attempts
LEGACY_PENDING_KEY = "greenq:callbacks:pending"  # before due/job: a set of job ids, moved over at start
LEGACY_CALLBACK_KEY_PREFIX = "greenq:callback:"  # + job id → JSON record, moved over at start

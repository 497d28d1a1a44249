"""The serving path inside a worker: a job is decoded and prompted (handler), waits for a batch
(batching: pure formation; batcher: the one thread that runs the model), is watched by observers,
and a device fault trips the breaker."""

"""greenq's worker side, in rooms. The path of one job, from the tree:

    edge/tasks.py        the Celery task that receives the job's message (one task per job type)
    edge/handler.py      validates the job, builds its prompt and hands it to serving/
    serving/             it waits, is admitted to a batch (admission.py) and runs in a loop (static or continuous)
    model/runtime.py     the model generates its text
    shared/result_store  the result is stored once; then the message is acknowledged

Around that path: edge/ also wires one worker process (process.py) with its leases, metrics, streaming and
remote control; energy/ meters joules and turns them into carbon; scheduler/ is the carbon-aware scheduler
(its own process); commands/ holds the `greenq` command and what only it runs (launcher, demo, exporter,
bench). Imports go one way, down this list: commands → edge → serving → model, energy → shared
(tests/unit/test_dependencies.py).
"""

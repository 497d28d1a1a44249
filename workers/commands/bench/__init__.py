"""`greenq bench`: the same workload three ways, side by side in one run.

(a) ceiling — the worker's own runtime called in-process on pre-formed batches (ceiling.py);
(b) greenq — producer → Redis → a real worker process, at saturation and at a fixed rate (deployment.py);
(c) naive — one Celery task per job, no batching, the same warm model (naive.py).

workload.py makes the jobs, run.py runs (a), (b) and (c), output.py writes JSON, Markdown and
plots. Results and the GPU sweep script are kept in ops/bench/.

`greenq bench --load` instead measures J/job and latency under open-loop Poisson load, per batch
policy (fixed, adaptive): load.py runs it on mixed_workload.py's jobs at arrivals.py's times,
window_energy.py reads the whole window's energy, load_stats.py makes the figures and
load_output.py writes them.
"""

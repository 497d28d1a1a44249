"""The serving path inside a worker, one concept per module, in the order a job meets them:

handler (decode, prompt, submit) → queue (waiting jobs) → batching (pure admission: which jobs run
together, for both loops) → static | continuous (the two sibling loops, chosen by probe and built by
batcher) → generate (one `generate`, split on failure) / the step decoder → outcomes (what the job's
future resolves with). Beside them: core (what the loops share), closing, adaptive, cost_model and
arrival_rate (when a static batch closes), size_cap, metering, triage and breaker (what a failure
means), observers (the named moments and their one dispatcher).
"""

"""What the `greenq` command runs besides the serving path: the command itself (cli.py), the per-device
launcher, the demo, the queue exporter and the benchmarks. Only this room plays both sides (it submits jobs
like a storefront and starts workers), so only it imports greenq.producers."""

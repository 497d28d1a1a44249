"""Launcher planning and device parsing, proven without a GPU."""

from __future__ import annotations

import pytest

from greenq.shared import job_types
from greenq.workers.commands.devices import Device, parse_devices
from greenq.workers.commands.launcher import plan_children


def test_one_child_per_gpu_with_its_own_visible_device() -> None:
    devices = parse_devices("cuda:0,cuda:1", gpu_count=2)
    specs = plan_children(devices, ["reply", "description"], "host", model="/m", python="py")
    assert [s.node_name for s in specs] == ["cuda0@host", "cuda1@host"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["0", "1"]
    for spec, label in zip(specs, ["cuda:0", "cuda:1"], strict=True):
        argv = list(spec.argv)
        assert argv[:3] == ["py", "-m", "greenq.workers.edge.process"]
        assert argv[argv.index("--device") + 1] == label
        assert argv[argv.index("--torch-device") + 1] == "cuda:0"  # each child sees one GPU
        assert argv[argv.index("--queues") + 1] == "reply,description"
        assert argv[argv.index("--model") + 1] == "/m"


def test_cpu_children_hide_gpus_and_split_threads() -> None:
    specs = plan_children(parse_devices("cpu:0,cpu:1", 4), list(job_types.names()), "h", cpu_count=8)
    assert [s.node_name for s in specs] == ["cpu0@h", "cpu1@h"]
    assert all(s.env["CUDA_VISIBLE_DEVICES"] == "" and s.env["OMP_NUM_THREADS"] == "4" for s in specs)


@pytest.mark.parametrize(
    ("spec", "gpus", "expected"),
    [
        ("cpu", 0, [Device("cpu")]),
        ("all", 0, [Device("cpu")]),
        ("all", 3, [Device("cuda", 0), Device("cuda", 1), Device("cuda", 2)]),
        ("0,2", 3, [Device("cuda", 0), Device("cuda", 2)]),
    ],
)
def test_parse_devices(spec: str, gpus: int, expected: list[Device]) -> None:
    assert parse_devices(spec, gpus) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cuda:2", "does not exist"),
        ("tpu", "not a device"),
        ("cpu,cpu", "listed twice"),
        ("", "no device"),
    ],
)
def test_parse_devices_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_devices(spec, gpu_count=1)

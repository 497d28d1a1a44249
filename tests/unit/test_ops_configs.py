"""Dashboards, alert rules, Prometheus configs and manifests: valid, tested, and only using metrics we export."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from greenq.shared.settings import Settings
from greenq.workers.scheduler.metrics import SchedulerMetrics
from tests.unit.test_metrics_doc import exported_names

OPS = Path(__file__).resolve().parents[2] / "ops"
PROMETHEUS = OPS / "prometheus"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMETHEUS_CONFIGS = ("prometheus.yml", "prometheus-compose.yml", "prometheus-kubernetes.yml")


def scheduler_names() -> set[str]:
    """What `greenq scheduler` exposes (counters with `_total`); exported_names() covers the other processes."""
    families = SchedulerMetrics(CollectorRegistry()).registry.collect()
    return {f.name + ("_total" if f.type == "counter" else "") for f in families}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-compose.yml"])
def test_promtool_checks_configs(config: str) -> None:
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_prometheus_config_parses() -> None:
    # Debian's promtool is built without Kubernetes service discovery, so only parse this one.
    config = yaml.safe_load((PROMETHEUS / "prometheus-kubernetes.yml").read_text())
    assert all((PROMETHEUS / f).exists() for f in config["rule_files"])
    assert {j["job_name"] for j in config["scrape_configs"]} == {
        "greenq-workers",
        "greenq-exporter",
        "greenq-scheduler",
    }


def test_alerts_on_up_name_a_job_every_prometheus_config_scrapes() -> None:
    jobs = set(re.findall(r'\bup\{job="([^"]+)"', (PROMETHEUS / "alerts.yml").read_text()))
    assert {"greenq-workers", "greenq-scheduler"} <= jobs
    for name in PROMETHEUS_CONFIGS:
        config = yaml.safe_load((PROMETHEUS / name).read_text())
        assert jobs <= {j["job_name"] for j in config["scrape_configs"]}, name


def test_file_targets_are_scraped_by_one_job_each() -> None:
    # One host runs workers on 9300 + device index, so a scheduler there on its default 9301 would be
    # scraped as a worker too: the example targets must keep them apart.
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    owner: dict[str, str] = {}
    for job in config["scrape_configs"]:
        for sd in job["file_sd_configs"]:
            for file in sd["files"]:
                for group in json.loads((PROMETHEUS / file).read_text()):
                    for address in group["targets"]:
                        assert owner.setdefault(address, job["job_name"]) == job["job_name"], address


@pytest.mark.slow  # promtool's rule unit tests take about 7 s
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    for args in (("check", "rules", "alerts.yml"), ("test", "rules", "alerts_test.yml")):
        result = promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {r["alert"] for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]}
    assert tested == alerts


def _expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    for dashboard in (OPS / "grafana" / "dashboards").glob("*.json"):
        exprs += [t["expr"] for p in json.loads(dashboard.read_text())["panels"] for t in p.get("targets", [])]
    exprs.append(yaml.safe_load((OPS / "k8s" / "keda.yaml").read_text())["spec"]["triggers"][0]["metadata"]["query"])
    return exprs


def test_queries_use_only_exported_metrics() -> None:
    exported = exported_names() | scheduler_names()
    used = set()
    for expr in _expressions():
        for name in re.findall(r"\bgreenq_[a-z0-9_]+\b", expr):
            base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name)
            used.add(name if name in exported else base)
    assert used <= exported, used - exported
    assert len(used) >= 15  # the dashboards cover what SREs watch


def test_every_query_parses(tmp_path: Path) -> None:
    # Grafana's range variables are not PromQL: give them a value, then let promtool parse each query.
    exprs = [re.sub(r"\$__(rate_)?interval|\$__range", "5m", expr) for expr in _expressions()]
    rules = {"groups": [{"name": "queries", "rules": [{"record": f"q{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(tmp_path / "queries.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_panels_have_unique_ids_the_provisioned_datasource_and_do_not_overlap() -> None:
    provisioned = yaml.safe_load((OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    source = {"type": "prometheus", "uid": provisioned["datasources"][0]["uid"]}
    for dashboard in (OPS / "grafana" / "dashboards").glob("*.json"):
        panels = json.loads(dashboard.read_text())["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), dashboard.name
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            if panel["type"] != "row":
                assert panel["datasource"] == source and all(t["datasource"] == source for t in panel["targets"])
            pos = panel["gridPos"]
            area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
            assert pos["x"] + pos["w"] <= 24 and not area & cells, panel["title"]
            cells |= area


def _manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((OPS / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_core_manifests_validate_against_the_kubernetes_schema() -> None:
    for doc in _manifests():
        if doc["apiVersion"].startswith("keda.sh"):
            continue  # a CRD: checked below
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_scraped_pods_expose_the_port_they_announce() -> None:
    for doc in _manifests():
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]
        port = pod["metadata"].get("annotations", {}).get("prometheus.io/port")
        ports = {p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        assert port is None or int(port) in ports, doc["metadata"]["name"]


def test_schedulers_run_two_replicas_with_the_exporters_settings() -> None:
    def container(name: str) -> dict[str, Any]:
        deployment = next(d for d in _manifests() if d["metadata"]["name"] == name and d["kind"] == "Deployment")
        return dict(deployment["spec"]["template"]["spec"]["containers"][0], replicas=deployment["spec"]["replicas"])

    scheduler = container("greenq-scheduler")
    assert scheduler["replicas"] == 2  # a job is released once however many run
    assert scheduler["args"] == ["scheduler"] and scheduler["envFrom"] == container("greenq-exporter")["envFrom"]
    config = next(d for d in _manifests() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "greenq-settings")
    assert int(config["data"]["GREENQ_SCHEDULER_PORT"]) == scheduler["ports"][0]["containerPort"]


def test_worker_pods_are_one_gpu_ready_when_warm_and_outlive_a_batch() -> None:
    worker = next(d for d in _manifests() if d["metadata"]["name"] == "greenq-worker" and d["kind"] == "Deployment")
    pod = worker["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert pod["terminationGracePeriodSeconds"] > Settings().max_batch_compute_s
    keda = next(d for d in _manifests() if d["kind"] == "ScaledObject")
    assert keda["spec"]["scaleTargetRef"]["name"] == "greenq-worker"


def test_compose_file_refers_to_files_that_exist() -> None:
    compose = yaml.safe_load((OPS / "compose.yaml").read_text())
    assert {"redis", "worker", "exporter", "scheduler", "gateway", "prometheus", "grafana"} <= set(compose["services"])
    assert (OPS / ".." / compose["x-greenq"]["build"]["dockerfile"]).exists()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (OPS / source).exists(), source

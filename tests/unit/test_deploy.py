"""Deployment files: they parse, every command they run is a real ``smsdispatch`` subcommand,
the shapes the issue asks for are there, and every metric they query exists.

promtool (Debian's ``prometheus`` package) and kubectl are used when installed;
``scripts/promtool-check.sh`` installs promtool and runs the same checks.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from dispatcher.cli.main import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
LANES = ("priority", "bulk", "dlr", "webhooks")
LANE_PORTS = {"priority": 9101, "bulk": 9102, "dlr": 9103, "webhooks": 9104}
WORKER_GRACE_S = 320  # celeryconfig.task_time_limit (300 s) + time to ack and exit


def load_all(path: pathlib.Path) -> list[Any]:
    """Every YAML document of a file (``---`` separated), empty ones dropped."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def k8s_docs() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            out.extend(load_all(path))
    return out


def smsdispatch_argv(argv: list[str]) -> list[str] | None:
    """The ``smsdispatch`` arguments of a command line (after env assignments and ``nice``)."""
    rest = list(argv)
    while rest and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", rest[0]):
        rest.pop(0)
    if rest[:1] == ["nice"]:
        rest = rest[1:]
        if rest[:1] == ["-n"]:
            rest = rest[2:]
    if rest[:1] == ["tini"]:
        rest = rest[2:] if rest[1:2] == ["--"] else rest[1:]
    if rest[:1] != ["smsdispatch"]:
        return None
    return rest[1:]


def commands() -> Iterator[tuple[str, list[str]]]:
    """(where, argv) for every process command the deployment files and the Procfile run."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, cmd = line.split(":", 1)
            yield f"Procfile:{name}", shlex.split(cmd)
    for name, svc in compose()["services"].items():
        cmd = svc.get("command")
        if cmd is not None and svc.get("image") == "smsdispatch:local":
            yield f"compose:{name}", list(cmd) if isinstance(cmd, list) else shlex.split(cmd)
    for doc in k8s_docs():
        for c in _containers(doc):
            yield f"k8s:{doc['metadata']['name']}", [*c.get("command", []), *c.get("args", [])]
    docker = (ROOT / "Dockerfile").read_text()
    default = re.search(r"^CMD (\[.*\])$", docker, re.M)
    assert default, "the Dockerfile names a default command"
    yield "Dockerfile:CMD", json.loads(default.group(1))


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    return list(pod.get("containers", []))


# -- parsing and commands --------------------------------------------------------------------------
def test_every_deployment_file_parses() -> None:
    files = [ROOT / "docker-compose.yml", *DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]
    assert len(files) >= 15
    for path in files:
        assert load_all(path), path
    for path in DEPLOY.rglob("*.json"):
        json.loads(path.read_text())


def test_every_command_is_a_smsdispatch_subcommand() -> None:
    parser = build_parser()
    seen = 0
    for where, argv in commands():
        args = smsdispatch_argv(argv)
        assert args is not None, f"{where}: not a smsdispatch command: {argv}"
        try:
            parser.parse_args(args)
        except (SystemExit, argparse.ArgumentError):
            pytest.fail(f"{where}: `smsdispatch {' '.join(args)}` is not a valid command")
        seen += 1
    assert seen >= 20


def test_every_procfile_process_runs_in_compose_and_kubernetes() -> None:
    """The same processes everywhere (the simulator only where there is no real carrier)."""
    subcommands: dict[str, set[str]] = {where.split(":", 1)[0]: set() for where, _ in commands()}
    for where, argv in commands():
        args = smsdispatch_argv(argv) or []
        key = " ".join(args[:3]) if args[:1] == ["worker"] else args[0]
        subcommands[where.split(":", 1)[0]].add(key)
    procfile = subcommands["Procfile"]
    assert "exporter" in procfile, "the Procfile runs the exporter"
    assert procfile <= subcommands["compose"]
    assert procfile - {"simulator"} <= subcommands["k8s"]


# -- docker compose --------------------------------------------------------------------------------
def test_compose_runs_the_whole_system() -> None:
    services = compose()["services"]
    want = {
        "redis",
        "postgres",
        "api",
        "links",
        *(f"worker-{lane}" for lane in LANES),
        "scheduler",
        "exporter",
        "simulator",
        "prometheus",
        "grafana",
    }
    assert want <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1]
    for lane in LANES:
        svc = services[f"worker-{lane}"]
        args = smsdispatch_argv(svc["command"])
        assert args is not None and args[:3] == ["worker", "--lane", lane]
        assert svc["stop_grace_period"] == f"{WORKER_GRACE_S}s"
        assert str(LANE_PORTS[lane]) in " ".join(svc["healthcheck"]["test"])
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_prometheus_scrapes_every_process() -> None:
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) == {
        "smsdispatch-api",
        "smsdispatch-links",
        "smsdispatch-worker",
        "smsdispatch-exporter",
        "smsdispatch-smpp",
    }
    workers = {(sd["names"][0], sd["port"]) for sd in jobs["smsdispatch-worker"]["dns_sd_configs"]}
    assert workers == {(f"worker-{lane}", port) for lane, port in LANE_PORTS.items()}
    assert jobs["smsdispatch-exporter"]["static_configs"][0]["targets"] == ["exporter:9105"]
    (smpp,) = jobs["smsdispatch-smpp"]["dns_sd_configs"]
    assert (smpp["names"], smpp["port"]) == (["smpp"], 9106)


# -- Kubernetes ------------------------------------------------------------------------------------
def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_docs() if d["kind"] == kind}


def test_one_deployment_per_lane_with_probes_grace_and_a_disruption_budget() -> None:
    deployments = by_kind("Deployment")
    budgets = by_kind("PodDisruptionBudget")
    for lane in LANES:
        d = deployments[f"smsdispatch-worker-{lane}"]
        pod = d["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] >= WORKER_GRACE_S
        (c,) = pod["containers"]
        assert (smsdispatch_argv(c["command"]) or [])[:3] == ["worker", "--lane", lane]
        port = LANE_PORTS[lane]
        assert {"name": "SMSDISPATCH_WORKER_METRICS_PORT", "value": str(port)} in c["env"]
        assert c["ports"][0]["containerPort"] == port
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)
        assert d["spec"]["template"]["metadata"]["labels"]["smsdispatch.io/lane"] == lane
    for name, d in deployments.items():
        selector = d["spec"]["selector"]["matchLabels"]
        assert selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        matching = [b for b in budgets.values() if b["spec"]["selector"]["matchLabels"] == selector]
        assert len(matching) == 1, f"{name} has one PodDisruptionBudget"
        if name != "smsdispatch-scheduler":  # no HTTP server: see scheduler.yaml
            for c in d["spec"]["template"]["spec"]["containers"]:
                assert "readinessProbe" in c and "livenessProbe" in c, name


def test_keda_scales_bulk_on_queue_length_and_never_the_priority_pool() -> None:
    scaled = by_kind("ScaledObject")
    targets = {s["spec"]["scaleTargetRef"]["name"]: s for s in scaled.values()}
    assert set(targets) == {"smsdispatch-worker-bulk"}
    trigger = targets["smsdispatch-worker-bulk"]["spec"]["triggers"][0]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == "smsd.bulk"
    priority = by_kind("Deployment")["smsdispatch-worker-priority"]
    assert priority["spec"]["replicas"] >= 2
    assert (
        by_kind("PodDisruptionBudget")["smsdispatch-worker-priority"]["spec"]["minAvailable"] >= 1
    )
    hpas = by_kind("HorizontalPodAutoscaler")
    assert all(h["spec"]["minReplicas"] >= 2 for h in hpas.values())


def test_kustomize_builds() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(out) if d]
    assert kinds.count("Deployment") == 9 and "ScaledObject" in kinds


# -- metrics referenced by rules and dashboards ----------------------------------------------------
def known_series() -> set[str]:
    """Every series name our processes expose (histograms and counters with their suffixes)."""
    from prometheus_client.metrics import MetricWrapperBase

    from dispatcher.api import metrics as api_metrics
    from dispatcher.links import clicks as link_clicks
    from dispatcher.links import redirect as link_redirect
    from dispatcher.ops import exporter
    from workers import metrics as wm
    from workers.smpp import metrics as smpp_metrics

    names: set[str] = set()
    for mod in (api_metrics, wm, smpp_metrics, link_redirect, link_clicks):
        for obj in vars(mod).values():
            if isinstance(obj, MetricWrapperBase):
                for fam in obj.describe():
                    names.add(fam.name)
                    if fam.type == "counter":
                        names.add(fam.name + "_total")
                    if fam.type == "histogram":
                        names.update(fam.name + s for s in ("_bucket", "_count", "_sum"))
    # The exporter's gauges and the pool's own collector, by their names in the source.
    for path in (pathlib.Path(exporter.__file__), ROOT / "workers" / "observability.py"):
        names.update(re.findall(r'"(smsdispatch_[a-z_]+)"', path.read_text()))
    return names


def queried_series(text: str) -> set[str]:
    return set(re.findall(r"\b(smsdispatch_[a-z_]+)\b", text))


def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "smsdispatch.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_rules_and_dashboards_query_only_metrics_that_exist() -> None:
    known = known_series()
    rules = (DEPLOY / "prometheus" / "rules" / "smsdispatch.rules.yml").read_text()
    assert queried_series(rules) <= known, queried_series(rules) - known
    dash = " ".join(dashboard_exprs())
    assert queried_series(dash) <= known, queried_series(dash) - known


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "smsdispatch.json").read_text())
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for words in (
        "throughput",
        "failure rate",
        "p50 / p99 against the objective",
        "queue depth",
        "oldest waiting task",
        "against its limit",
        "webhook failures",
    ):
        assert words in titles, words
    exprs = " ".join(dashboard_exprs())
    assert 'le="1.0"' in exprs and "vector(1)" in exprs  # the objective line
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "smsdispatch.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_alert_has_a_runbook_section() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "smsdispatch.rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    for want in (
        "OtpLatencyBudgetBurnFast",
        "MessageFailureRatioHigh",
        "QueueAgeHigh",
        "ReportLagHigh",
        "WebhookEndpointSuspended",
        "WorkerPoolDown",
    ):
        assert want in {a["alert"] for a in alerts}
    doc = (ROOT / "docs" / "operations.md").read_text()
    anchors = {_github_anchor(h) for h in re.findall(r"^#+ (.+)$", doc, re.M)}
    for a in alerts:
        runbook = a["annotations"]["runbook"]
        assert runbook.startswith("docs/operations.md#"), a["alert"]
        assert runbook.split("#", 1)[1] in anchors, (a["alert"], runbook)
        assert a["labels"]["severity"] in {"page", "ticket"}


def _github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


# -- promtool -------------------------------------------------------------------------------------
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (scripts/promtool-check.sh installs it)")
    return path


def test_promtool_checks_config_and_rules() -> None:
    tool = promtool()
    subprocess.run(
        [tool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [tool, "check", "rules", str(DEPLOY / "prometheus" / "rules" / "smsdispatch.rules.yml")],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_promtool_rule_unit_tests_pass() -> None:
    tool = promtool()
    result = subprocess.run(
        [tool, "test", "rules", str(DEPLOY / "prometheus" / "tests" / "smsdispatch.test.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: pathlib.Path) -> None:
    """promtool parses every dashboard query (as a recording rule)."""
    tool = promtool()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:q{i}", "expr": e.replace("$__rate_interval", "5m")}
                    for i, e in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- issue 17: reproducible image, generated operator objects, migrations before traffic --------
def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "k8s_monitoring", ROOT / "scripts" / "k8s_monitoring.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_service_monitor_and_prometheus_rule_are_generated_from_the_tested_rules() -> None:
    generator = _generator()
    assert (DEPLOY / "k8s" / "monitoring.yaml").read_text() == generator.render(), (
        "run: .venv/bin/python scripts/k8s_monitoring.py"
    )
    docs = load_all(DEPLOY / "k8s" / "monitoring.yaml")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    promtool_tested = yaml.safe_load(
        (DEPLOY / "prometheus" / "rules" / "smsdispatch.rules.yml").read_text()
    )
    assert rule["spec"]["groups"] == promtool_tested["groups"]
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert "monitoring.yaml" in kustomization["resources"]


def test_service_monitor_scrapes_every_scraped_pod_with_the_rules_labels() -> None:
    docs = load_all(DEPLOY / "k8s" / "monitoring.yaml")
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    services = [d for d in docs if d["kind"] == "Service"]
    selected = [
        s for s in services
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]  # fmt: skip
    jobs = {s["metadata"]["labels"][monitor["spec"]["jobLabel"]] for s in selected}
    rules = (DEPLOY / "prometheus" / "rules" / "smsdispatch.rules.yml").read_text()
    assert set(re.findall(r'job="([a-z-]+)"', rules)) <= jobs
    (endpoint,) = monitor["spec"]["endpoints"]
    assert {r["targetLabel"] for r in endpoint["relabelings"]} >= {"lane", "pod"}
    # Every pod that asks to be scraped is behind one of the Services, on its named port.
    for d in by_kind("Deployment").values():
        template = d["spec"]["template"]
        if template["metadata"].get("annotations", {}).get("prometheus.io/scrape") != "true":
            continue
        port = int(template["metadata"]["annotations"]["prometheus.io/port"])
        named = {
            p["name"]
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
            if p["containerPort"] == port
        }
        matching = [
            s for s in selected
            if s["spec"]["selector"].items() <= template["metadata"]["labels"].items()
            and s["spec"]["ports"][0]["targetPort"] in named
        ]  # fmt: skip
        assert len(matching) == 1, d["metadata"]["name"]
        assert matching[0]["spec"]["clusterIP"] == "None"


def test_new_pods_migrate_before_their_process_starts() -> None:
    """No Job to delete by hand: every Deployment's pods run `smsdispatch migrate` (idempotent,
    one at a time on an advisory lock) as an init container with the same image and settings."""
    assert by_kind("Job") == {}
    for name, d in by_kind("Deployment").items():
        pod = d["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]
        (main,) = pod["containers"]
        assert smsdispatch_argv(init["command"]) == ["migrate"], name
        assert init["image"] == main["image"] and init["envFrom"] == main["envFrom"], name
        assert init["securityContext"]["readOnlyRootFilesystem"] is True, name


def test_pods_get_no_service_link_variables() -> None:
    """A Service named smsdispatch-api would put SMSDISPATCH_API_PORT=tcp://… into every pod
    of the namespace, which the settings refuse: service links are off everywhere."""
    services = {d["metadata"]["name"] for d in k8s_docs() if d["kind"] == "Service"}
    injected = {s.upper().replace("-", "_") + "_PORT" for s in services}
    assert "SMSDISPATCH_API_PORT" in injected  # the collision is real
    for name, d in by_kind("Deployment").items():
        assert d["spec"]["template"]["spec"]["enableServiceLinks"] is False, name


def _pins(lock: pathlib.Path) -> dict[str, str]:
    return {
        m.group(1).lower(): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+?)(?: |\\|$)", lock.read_text(), re.M)
    }


def test_the_image_installs_exactly_the_versions_ci_tested() -> None:
    """Checked statically (no Docker daemon here): the build installs requirements.lock with
    every hash required, installs our own code without resolving anything, and the lock pins
    the same versions as requirements-dev.lock, which CI installs and tests."""
    docker = (ROOT / "Dockerfile").read_text()
    runs = [
        " ".join(r.split())
        for r in re.findall(r"^RUN (.*?)(?<!\\)$", docker.replace("\\\n", " "), re.M | re.S)
    ]
    assert re.search(r"^COPY requirements\.lock \./$", docker, re.M)
    syncs = [r for r in runs if "pip sync" in r]
    assert (
        len(syncs) == 1
        and "--require-hashes" in syncs[0]
        and syncs[0].endswith("requirements.lock")
    )
    installs = [r for r in runs if "pip install" in r]
    assert installs and all("--no-deps" in r for r in installs), installs
    assert not re.search(r"pip install[^&]*-r ", " ".join(runs))
    runtime, dev = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-dev.lock")
    assert len(runtime) > 30
    assert {k: v for k, v in runtime.items() if dev.get(k) != v} == {}
    # Every pin carries hashes (what --require-hashes needs).
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements.lock").read_text())
    assert all("--hash=sha256:" in b for b in blocks if "==" in b.split("\n", 1)[0])
    # The interpreter the lock was resolved for.
    assert "python:3.11-" in docker and "--python-version 3.11" in (ROOT / "Makefile").read_text()

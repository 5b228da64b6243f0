"""The dashboard and the alert rules query only what printery exports.

A dashboard panel or an alert on a metric printery does not export shows
nothing and fires never, silently. Every PromQL expression in
deploy/grafana/printery.json and deploy/prometheus/rules.yml is parsed, and
each metric, label and outcome it names is checked against docs/operations.md.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.deploy import support

promql = pytest.importorskip(
    "promql_parser", reason="needs promql-parser (deploy/check installs it)"
)

DASHBOARD = support.DEPLOY / "grafana" / "printery.json"
RULES = support.DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = support.DEPLOY / "prometheus" / "rules_test.yml"

# docs/operations.md, with the series a histogram and a counter expose, and their labels.
EXPORTED: dict[str, set[str]] = {
    "printery_messages_total": {"worker", "outcome"},
    "printery_message_duration_seconds_bucket": {"worker", "le"},
    "printery_message_duration_seconds_count": {"worker"},
    "printery_message_duration_seconds_sum": {"worker"},
    "printery_worker_up": {"worker"},
    "printery_worker_restarts_total": {"worker"},
    "printery_worker_uptime_seconds": {"worker"},
    "printery_worker_errors_total": {"worker"},
    "printery_stream_pending": {"stream", "group"},
    "printery_stream_lag": {"stream", "group"},
    "printery_redis_up": set(),
    "printery_build_info": {"version"},
}
OUTCOMES = {"acked", "retried", "dead_lettered"}
# Labels Prometheus attaches to every scraped series (static configs, ServiceMonitor).
TARGET_LABELS = {"instance", "job", "namespace", "pod", "service", "container", "endpoint"}
ALL_LABELS = set().union(*EXPORTED.values()) | TARGET_LABELS

# Grafana's variables, replaced by values of the same syntax before parsing.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "6h",
    "$worker": ".*",
}


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(_panels(panel.get("panels", [])))
    return found


def _dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = _dashboard()
    found = [
        (f"dashboard panel {panel['title']!r}", target["expr"])
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = (
            variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        )
        label_values = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert label_values, f"variable {variable['name']}: {query}"
        found.append((f"dashboard variable {variable['name']}", label_values.group(1)))
    return found


def _rules() -> list[dict[str, Any]]:
    groups = support.load_docs(RULES)[0]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _rule_expressions() -> list[tuple[str, str]]:
    return [(f"rule {rule.get('alert', rule.get('record'))}", rule["expr"]) for rule in _rules()]


def _substitute(expr: str) -> str:
    # Longest names first: $__range must not eat the prefix of a longer variable.
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def _names(expr: str) -> tuple[list[Any], set[str]]:
    """The vector selectors of ``expr`` and every label it groups or matches on."""
    selectors: list[Any] = []
    labels: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql.VectorSelector):
            selectors.append(node)
        elif isinstance(node, promql.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)
        elif isinstance(node, promql.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                labels.update(node.modifier.matching.labels)
            labels.update(node.modifier.group_labels or [])

    promql.walk(promql.parse(expr), visit)
    return selectors, labels


EXPRESSIONS = _dashboard_expressions() + _rule_expressions()


@pytest.mark.parametrize(("where", "expr"), EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_expression_names_only_exported_metrics(where: str, expr: str) -> None:
    """Each selector names a documented metric, with that metric's labels and outcomes."""
    assert "$" not in _substitute(expr), f"{where}: unknown Grafana variable in {expr}"
    selectors, grouping = _names(_substitute(expr))
    assert selectors, f"{where}: selects no metric"
    for selector in selectors:
        assert selector.name in EXPORTED, f"{where}: {selector.name!r} is not a printery metric"
        for matcher in selector.matchers.matchers:
            assert matcher.name in EXPORTED[selector.name] | TARGET_LABELS, (
                f"{where}: {selector.name} has no label {matcher.name!r}"
            )
            if matcher.name == "outcome" and str(matcher.op) in {
                "MatchOp.Equal",
                "MatchOp.NotEqual",
            }:
                assert matcher.value in OUTCOMES, f"{where}: no outcome {matcher.value!r}"
    assert set() == grouping - ALL_LABELS, f"{where}: groups by unknown labels"


def test_metric_check_rejects_foreign_names() -> None:
    """The check itself: a node_exporter metric and a misspelt label are caught."""
    selectors, _ = _names(
        'rate(node_cpu_seconds_total[5m]) + on (workers) printery_worker_up{wrker="a"}'
    )
    assert [s.name for s in selectors] == ["node_cpu_seconds_total", "printery_worker_up"]
    _, grouping = _names("sum by (workers) (printery_worker_up)")
    assert {"workers"} == grouping - ALL_LABELS


def test_dashboard_is_well_formed() -> None:
    """Fixed uid, unique panel ids, a datasource variable on every panel, a 24-column grid."""
    dashboard = _dashboard()
    assert dashboard["uid"] == "printery"
    panels = _panels(dashboard["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_covers_the_operating_questions() -> None:
    """Throughput, outcomes, p50/p95/p99, lag, pending, restarts, up, dead letters, Redis."""
    text = " ".join(expr for _, expr in _dashboard_expressions())
    for needle in (
        "rate(printery_messages_total",
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "printery_stream_lag",
        "printery_stream_pending",
        "printery_worker_restarts_total",
        "printery_worker_up",
        'outcome="dead_lettered"',
        "printery_redis_up",
    ):
        assert needle in text, needle


def test_every_alert_is_labelled_and_explained() -> None:
    """Each alert has a unique name, a severity and a summary and description."""
    alerts = [rule for rule in _rules() if "alert" in rule]
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names))
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]


def test_alerts_cover_the_failure_modes() -> None:
    """Worker down, restarts, lag, dead letters, Redis down, absent targets all alert."""
    names = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert {
        "PrinteryWorkerDown",
        "PrinteryWorkerRestartsClimbing",
        "PrinteryStreamLagGrowing",
        "PrinteryDeadLetters",
        "PrinteryRedisDown",
        "PrinteryWorkerAbsent",
        "PrinteryTargetAbsent",
    } <= names


def test_every_alert_has_a_unit_test() -> None:
    """rules_test.yml loads rules.yml and exercises every alert in it."""
    tests = support.load_docs(RULES_TEST)[0]
    assert tests["rule_files"] == ["rules.yml"]
    tested = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]}
    assert {rule["alert"] for rule in _rules() if "alert" in rule} == tested

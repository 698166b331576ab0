"""The Grafana dashboard (openshift/monitoring/valeria-dashboard.json) asks only for what is exported.

Every PromQL expression is parsed for its metric selectors; each must name its scrape job
(`valeria-hub` or `valeria-notebooks`, set by openshift/templates/valeria-monitoring.yaml), and no
metric may appear without a selector. Whether each metric is really exported is checked where a
real server runs: tests/test_hub_observability.py reads a real hub's /hub/metrics and
tests/test_datalake_metrics.py a real notebook server's /metrics, and both call
`missing_from(job, exported)` below.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parent.parent / "openshift" / "monitoring" / "valeria-dashboard.json"
JOBS = ("valeria-hub", "valeria-notebooks")

_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_STRING = re.compile(r'"[^"]*"')
_WORD = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
#: PromQL functions, aggregations and keywords the dashboard may use
PROMQL_WORDS = {
    *("sum", "avg", "min", "max", "count", "topk", "bottomk", "rate", "irate", "increase"),
    *("histogram_quantile", "clamp_min", "clamp_max", "abs", "sort_desc", "bool", "offset"),
    *("and", "or", "unless", "group_left", "group_right"),
}


def expressions() -> list[str]:
    """Every target expression of every panel (rows included)."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = list(dashboard["panels"])
    for panel in list(panels):
        panels.extend(panel.get("panels", []))
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def selectors(expr: str) -> list[tuple[str, dict[str, str]]]:
    """(metric name, {label: value of its `=` matchers}) of each selector in ``expr``."""
    out = []
    for name, body in _SELECTOR.findall(expr):
        matchers = {label: value for label, op, value in _MATCHER.findall(body) if op == "="}
        out.append((name, matchers))
    return out


def bare_words(expr: str) -> set[str]:
    """Identifiers left once selectors, groupings, ranges and strings are removed: should be none
    but PromQL's own words (a metric named without a selector would show up here)."""
    rest = _STRING.sub("", _RANGE.sub("", _GROUPING.sub("", _SELECTOR.sub("", expr))))
    return {w for w in _WORD.findall(rest) if w not in PROMQL_WORDS}


def metrics_by_job() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {job: set() for job in JOBS}
    for expr in expressions():
        for name, matchers in selectors(expr):
            found.setdefault(matchers.get("job", ""), set()).add(name)
    return found


def missing_from(job: str, exported: set[str]) -> set[str]:
    """Metric names the dashboard queries for ``job`` that ``exported`` (sample names) lacks."""
    return metrics_by_job()[job] - exported


def test_every_query_selects_a_known_job_and_names_no_bare_metric() -> None:
    exprs = expressions()
    assert len(exprs) >= 20
    for expr in exprs:
        found = selectors(expr)
        assert found, expr
        assert all(m.get("job") in JOBS for _, m in found), expr
        assert bare_words(expr) == set(), expr
    by_job = metrics_by_job()
    assert set(by_job) == set(JOBS)
    assert all(by_job[job] for job in JOBS)


def test_the_parser_sees_what_it_must() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(a_bucket{job="valeria-hub",x!~"2.."}[5m])))'
        " / on (stage) b_total"
    )
    assert selectors(expr) == [("a_bucket", {"job": "valeria-hub"})]
    assert bare_words(expr) == {"b_total"}

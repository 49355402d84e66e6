"""The Grafana dashboards: committed JSON is what the generator makes, and every query reads a real metric."""

from __future__ import annotations

import json

import pytest

from deploy.grafana import generate
from tests.support.metric_names import declared_series, promql_metric_names, undeclared


def _exprs(board: dict) -> list[str]:
    return [t["expr"] for panel in generate.panels_of(board) for t in panel.get("targets", [])]


@pytest.mark.parametrize("name", sorted(generate.DASHBOARDS))
def test_committed_dashboard_is_what_the_generator_makes(name: str) -> None:
    path = generate.OUT_DIR / name
    assert path.exists(), f"{path} is missing: run make dashboards"
    assert path.read_text(encoding="utf-8") == generate.render()[name], (
        f"{path} is stale (deploy/grafana/generate.py changed): run make dashboards and commit the JSON"
    )


@pytest.mark.parametrize("name", sorted(generate.DASHBOARDS))
def test_every_panel_queries_only_declared_metrics(name: str) -> None:
    board = json.loads(generate.render()[name])
    exprs = _exprs(board)
    assert exprs, "a dashboard without queries"
    assert undeclared(exprs) == {}, "panels query metrics that services/runtime/metrics.py does not declare"


def test_the_metric_name_parser_sees_through_promql() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, service) (rate(omboard_x_bucket{service=~"$service", a="b(c)"}'
            '[$__rate_interval]))) / on (service) group_left (kind) omboard_y_total offset 1d > bool 0')
    assert promql_metric_names(expr) == {"omboard_x_bucket", "omboard_y_total"}
    assert undeclared(["omboard_no_such_metric", "up", "omboard_processing_duration_seconds_bucket"]) == {
        "omboard_no_such_metric": {"omboard_no_such_metric"}
    }
    assert "omboard_events_consumed_total" in declared_series()  # a Counter's series carries _total


def test_dashboards_are_wired_to_the_datasource_variable() -> None:
    for name in generate.DASHBOARDS:
        board = json.loads(generate.render()[name])
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        ids = [panel["id"] for panel in generate.panels_of(board)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in generate.panels_of(board):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            for query in panel["targets"]:
                assert query["datasource"]["uid"] == "${datasource}", panel["title"]


def test_operations_dashboard_covers_what_operators_watch() -> None:
    names = set().union(*map(promql_metric_names, _exprs(generate.operations())))
    for metric in (
        "up", "omboard_events_consumed_total", "omboard_events_failed_total",
        "omboard_processing_duration_seconds_bucket", "omboard_message_age_seconds_bucket",
        "omboard_consumer_lag_messages", "omboard_dead_letters_total",
        "omboard_notifier_emails_sent_total", "omboard_notifier_emails_failed_total",
    ):
        assert metric in names, f"operations dashboard lacks {metric}"


def test_checklist_dashboard_covers_open_and_overdue_work() -> None:
    exprs = _exprs(generate.checklist())
    for by in ("system", "responsible"):
        for metric in ("omboard_reporting_tasks_open", "omboard_reporting_tasks_overdue"):
            assert any(f"sum by ({by}) ({metric}" in e for e in exprs), f"checklist lacks {metric} by {by}"
    names = set().union(*map(promql_metric_names, exprs))
    assert {"omboard_reporting_tasks_created_total", "omboard_reporting_tasks_completed_total",
            "omboard_late_orders_total"} <= names

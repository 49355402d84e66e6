"""Grafana dashboards as code: writes deploy/grafana/dashboards/*.json.

Run ``make dashboards`` (``python -m deploy.grafana.generate``) after changing this file and commit
the JSON; ``tests/unit/test_dashboards.py`` fails while the committed JSON is stale, and when a panel
queries a metric that ``services/runtime/metrics.py`` does not declare.

Plain JSON (Grafana schemaVersion 39, Grafana 10.x/11.x): no SDK to pin. Every panel reads the
Prometheus chosen in the ``datasource`` variable; the provisioned one is the default.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from schemas.events import SYSTEMS
from schemas.topics import SERVICES

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
# The job name of the scrape config in deploy/prometheus/prometheus.yml (and the k8s PodMonitor).
JOB = "omboard"

Panel = dict[str, Any]


# -- building blocks ----------------------------------------------------------------------------


def target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }


def targets(*pairs: tuple[str, str], instant: bool = False) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i), instant=instant) for i, (expr, legend) in enumerate(pairs)]


def timeseries(
    title: str, description: str, exprs: list[tuple[str, str]], unit: str = "short", *, stack: bool = False
) -> Panel:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 10,
                    "showPoints": "never",
                    "spanNulls": False,
                    "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets(*exprs),
    }


def _steps(thresholds: list[tuple[float | None, str]]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in thresholds]}


def _latest_value_panel(kind: str, title: str, description: str, exprs: list[tuple[str, str]],
                        defaults: dict[str, Any], options: dict[str, Any]) -> Panel:
    """A panel showing each series' latest value (stat, bar gauge), read with instant queries."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, **options},
        "targets": targets(*exprs, instant=True),
    }


def stat(title: str, description: str, exprs: list[tuple[str, str]], *, thresholds: list[tuple[float | None, str]],
         unit: str = "short", mappings: list[dict[str, Any]] | None = None) -> Panel:
    return _latest_value_panel(
        "stat", title, description, exprs,
        {"unit": unit, "mappings": mappings or [], "thresholds": _steps(thresholds)},
        {"colorMode": "background", "graphMode": "none", "textMode": "value_and_name", "justifyMode": "auto",
         "orientation": "auto"},
    )


def bargauge(title: str, description: str, exprs: list[tuple[str, str]], *,
             thresholds: list[tuple[float | None, str]]) -> Panel:
    return _latest_value_panel(
        "bargauge", title, description, exprs,
        {"unit": "short", "min": 0, "thresholds": _steps(thresholds)},
        {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True, "valueMode": "color",
         "namePlacement": "left"},
    )


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def layout(sections: list[tuple[str, list[tuple[Panel, int, int]]]]) -> list[Panel]:
    """Rows of panels, each given as (panel, width, height) on Grafana's 24-column grid."""
    panels: list[Panel] = []
    y = 0
    for title, items in sections:
        panels.append({**row(title), "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        y += 1
        x, line_height = 0, 0
        for panel, width, height in items:
            if x + width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append({**panel, "gridPos": {"h": height, "w": width, "x": x, "y": y}})
            x += width
            line_height = max(line_height, height)
        y += line_height
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return panels


def datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "hide": 0,
        "current": {},
        "options": [],
        "includeAll": False,
        "multi": False,
    }


def custom_variable(name: str, label: str, values: tuple[str, ...]) -> dict[str, Any]:
    options = [{"text": "All", "value": "$__all", "selected": True}]
    options += [{"text": value, "value": value, "selected": False} for value in values]
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(values),
        "options": options,
        "current": {"text": ["All"], "value": ["$__all"], "selected": True},
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "hide": 0,
    }


def dashboard(uid: str, title: str, description: str, variables: list[dict[str, Any]], panels: list[Panel],
              *, links_to: list[str], refresh: str = "30s", time_from: str = "now-6h") -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["omboard"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "monday",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {"type": "dashboards", "tags": ["omboard"], "asDropdown": False, "title": "omboard",
             "includeVars": False, "keepTime": True, "targetBlank": False, "icon": "external link",
             "tooltip": "", "url": ""}
        ] if links_to else [],
        "templating": {"list": variables},
        "panels": panels,
    }


# -- the dashboards ---------------------------------------------------------------------------------

SVC = 'service=~"$service"'
GREEN_RED = [(None, "green"), (1, "red")]


def _quantiles(metric: str, by: str = "service", selector: str = SVC) -> list[tuple[str, str]]:
    return [
        (f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
         f"{{{{{by}}}}} p{int(q * 100)}")
        for q in (0.5, 0.99)
    ]


def operations() -> dict[str, Any]:
    up_mappings = [
        {"type": "value", "options": {
            "0": {"text": "DOWN", "color": "red", "index": 0},
            "1": {"text": "UP", "color": "green", "index": 1},
        }}
    ]
    sections = [
        ("Health", [
            (stat("Up", "Prometheus could scrape the process's /metrics (the `up` series). DOWN: the process is "
                  "gone or unreachable; see the OmboardServiceDown alert.",
                  [(f'min by (service) (up{{job="{JOB}"}})', "{{service}}")],
                  thresholds=[(None, "red"), (1, "green")], mappings=up_mappings), 12, 4),
            (stat("Consumer lag (messages)", "Messages not yet consumed, per service, summed over its topics "
                  "and workers.", [(f"sum by (service) (omboard_consumer_lag_messages{{{SVC}}})", "{{service}}")],
                  thresholds=[(None, "green"), (1000, "orange"), (10000, "red")]), 6, 4),
            (stat("Dead letters (24h)", "Records written to dead-letter topics in the last 24 hours.",
                  [(f"sum(increase(omboard_dead_letters_total{{{SVC}}}[24h]))", "dead letters")],
                  thresholds=GREEN_RED), 6, 4),
        ]),
        ("Throughput", [
            (timeseries("Consumed", "Messages each service consumed per second.",
                        [(f"sum by (service) (rate(omboard_events_consumed_total{{{SVC}}}[{RATE}]))", "{{service}}")],
                        "ops"), 8, 8),
            (timeseries("Errors", "Messages a service could not process, per second, by service and type "
                        "(each one is also dead-lettered).",
                        [(f"sum by (service, type) (rate(omboard_events_failed_total{{{SVC}}}[{RATE}]))",
                          "{{service}} {{type}}")], "ops"), 8, 8),
            (timeseries("Dead letters", "Records written to omboard.deadletter.<service>, per second, by the "
                        "topic they came from.",
                        [(f"sum by (service, topic) (rate(omboard_dead_letters_total{{{SVC}}}[{RATE}]))",
                          "{{service}} ← {{topic}}")], "ops"), 8, 8),
        ]),
        ("Latency and lag", [
            (timeseries("Processing duration p50 / p99", "Time to process one message.",
                        _quantiles("omboard_processing_duration_seconds"), "s"), 8, 8),
            (timeseries("Message age p50 / p99", "Now minus the message's Kafka timestamp when it was processed: "
                        "how far behind real time a service is.",
                        _quantiles("omboard_message_age_seconds"), "s"), 8, 8),
            (timeseries("Consumer lag", "Messages not yet consumed, by service and topic (summed over the "
                        "partitions assigned to each worker, then over workers).",
                        [(f"sum by (service, topic) (omboard_consumer_lag_messages{{{SVC}}})",
                          "{{service}} {{topic}}")]), 8, 8),
        ]),
        ("Mail (notifier)", [
            (timeseries("Emails sent", "Mails the SMTP server accepted, per second, by kind.",
                        [(f"sum by (kind) (rate(omboard_notifier_emails_sent_total[{RATE}]))", "{{kind}}")],
                        "ops"), 8, 8),
            (timeseries("Emails failed", "Mails not delivered, per second, by kind and failure class.",
                        [(f"sum by (kind, failure) (rate(omboard_notifier_emails_failed_total[{RATE}]))",
                          "{{kind}} {{failure}}")], "ops"), 8, 8),
            (timeseries("SMTP retries", "Temporary SMTP failures that were retried, per second.",
                        [(f"sum by (kind) (rate(omboard_notifier_email_retries_total[{RATE}]))", "{{kind}}")],
                        "ops"), 8, 8),
        ]),
        ("Planning and intake", [
            (timeseries("Tasks planned", "Tasks the planners emitted, per second, by target system.",
                        [(f"sum by (system) (rate(omboard_tasks_planned_total[{RATE}]))", "{{system}}")],
                        "ops", stack=True), 8, 8),
            (timeseries("Deadline sweep duration p50 / p99", "Time one reporting deadline sweep took.",
                        [(f"histogram_quantile({q}, sum by (le) (rate(omboard_reporting_sweep_duration_seconds_bucket"
                          f"[{RATE}])))", f"p{int(q * 100)}") for q in (0.5, 0.99)], "s"), 8, 8),
            (timeseries("Intake API", "Events accepted and published, and events refused by HTTP status, "
                        "per second.",
                        [(f"sum by (type) (rate(omboard_api_events_published_total[{RATE}]))", "published {{type}}"),
                         (f"sum by (status) (rate(omboard_api_events_rejected_total[{RATE}]))", "rejected {{status}}")],
                        "ops"), 8, 8),
        ]),
    ]
    return dashboard(
        "omboard-operations", "omboard / Operations",
        "Throughput, errors, latency, lag, dead letters and mail of every omboard service.",
        [datasource_variable(), custom_variable("service", "Service", SERVICES)],
        layout(sections), links_to=["omboard-checklist"],
    )


def checklist() -> dict[str, Any]:
    sel = 'system=~"$system"'
    sections = [
        ("Now", [
            (stat("Open tasks", "Tasks open or blocked in the ledger.",
                  [(f"sum(omboard_reporting_tasks_open{{{sel}}})", "open")],
                  thresholds=[(None, "blue")]), 6, 4),
            (stat("Overdue tasks", "Open or blocked tasks past their due date.",
                  [(f"sum(omboard_reporting_tasks_overdue{{{sel}}})", "overdue")],
                  thresholds=GREEN_RED), 6, 4),
            (stat("Late orders (7d)", "Tasks planned with a deadline already past, in the last 7 days: the "
                  "event came in too late for the checklist's lead time.",
                  [(f"sum(increase(omboard_late_orders_total{{{sel}}}[7d]))", "late orders")],
                  thresholds=[(None, "green"), (1, "orange")]), 6, 4),
            (stat("Completed (7d)", "Tasks moved to done in the last 7 days.",
                  [(f"sum(increase(omboard_reporting_tasks_completed_total{{{sel}}}[7d]))", "completed")],
                  thresholds=[(None, "blue")]), 6, 4),
        ]),
        ("By system", [
            (bargauge("Open by system", "Open or blocked tasks per target system.",
                      [(f"sum by (system) (omboard_reporting_tasks_open{{{sel}}})", "{{system}}")],
                      thresholds=[(None, "blue")]), 12, 9),
            (bargauge("Overdue by system", "Overdue tasks per target system.",
                      [(f"sum by (system) (omboard_reporting_tasks_overdue{{{sel}}})", "{{system}}")],
                      thresholds=GREEN_RED), 12, 9),
        ]),
        ("By responsible party", [
            (bargauge("Open by responsible party", "Open or blocked tasks per responsible party.",
                      [(f"sum by (responsible) (omboard_reporting_tasks_open{{{sel}}})", "{{responsible}}")],
                      thresholds=[(None, "blue")]), 12, 7),
            (bargauge("Overdue by responsible party", "Overdue tasks per responsible party.",
                      [(f"sum by (responsible) (omboard_reporting_tasks_overdue{{{sel}}})", "{{responsible}}")],
                      thresholds=GREEN_RED), 12, 7),
        ]),
        ("Over time", [
            (timeseries("Overdue over time", "Overdue tasks by system.",
                        [(f"sum by (system) (omboard_reporting_tasks_overdue{{{sel}}})", "{{system}}")],
                        stack=True), 12, 8),
            (timeseries("Open over time", "Open or blocked tasks by system.",
                        [(f"sum by (system) (omboard_reporting_tasks_open{{{sel}}})", "{{system}}")],
                        stack=True), 12, 8),
            (timeseries("Tasks created and completed (per hour)", "Tasks added to the ledger and tasks moved to "
                        "done, per hour.",
                        [(f"sum(rate(omboard_reporting_tasks_created_total{{{sel}}}[{RATE}])) * 3600", "created"),
                         (f"sum(rate(omboard_reporting_tasks_completed_total{{{sel}}}[{RATE}])) * 3600", "completed")]),
             12, 8),
            (timeseries("Late orders (per hour)", "Tasks planned with a deadline already past, per hour, by "
                        "system.",
                        [(f"sum by (system) (rate(omboard_late_orders_total{{{sel}}}[{RATE}])) * 3600", "{{system}}")],
                        stack=True), 12, 8),
            (timeseries("Reminders and escalations (per hour)", "Notifications the deadline sweep asked for, "
                        "by kind.",
                        [(f"sum by (kind) (rate(omboard_reporting_notifications_requested_total[{RATE}])) * 3600",
                          "{{kind}}")], stack=True), 12, 8),
            (timeseries("Status changes (per hour)", "Accepted task status changes, by new status.",
                        [(f"sum by (status) (rate(omboard_reporting_task_status_changes_total[{RATE}])) * 3600",
                          "{{status}}")], stack=True), 12, 8),
        ]),
    ]
    return dashboard(
        "omboard-checklist", "omboard / Checklist",
        "The municipality's IT checklist as work: open and overdue tasks by system and responsible party.",
        [datasource_variable(), custom_variable("system", "System", SYSTEMS)],
        layout(sections), links_to=["omboard-operations"], refresh="1m", time_from="now-7d",
    )


DASHBOARDS = {"operations.json": operations, "checklist.json": checklist}


def render() -> dict[str, str]:
    """File name -> the JSON text the generator writes (deterministic, newline-terminated)."""
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()}


def panels_of(board: dict[str, Any]) -> Iterator[Panel]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        path = OUT_DIR / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            print(f"unchanged {path}")
            continue
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

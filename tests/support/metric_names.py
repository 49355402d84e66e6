"""Which metric names the services expose, and which ones a PromQL expression reads.

Dashboards and alert rules are checked against ``services/runtime/metrics.py`` so that a panel or
an alert can never query a metric no service exposes (it would show "No data", or never fire).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from services.runtime import metrics

#: Series Prometheus itself writes for every scrape target.
SCRAPE_SERIES = frozenset({"up"})

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def declared_collectors() -> list[MetricWrapperBase]:
    """Every prometheus_client metric declared at the top level of services/runtime/metrics.py."""
    return [value for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)]


def declared_series() -> dict[str, MetricWrapperBase]:
    """Series name -> collector: ``<name>_total`` for counters; ``<name>`` for gauges and histograms."""
    series: dict[str, MetricWrapperBase] = {}
    for collector in declared_collectors():
        for family in collector.describe():
            # prometheus_client strips "_total" from a Counter's family name; its samples carry it.
            name = family.name + "_total" if isinstance(collector, Counter) else family.name
            series[name] = collector
    return series


def is_declared(name: str) -> bool:
    """True if ``name`` is a series some omboard process exposes (or Prometheus writes, ``up``)."""
    if name in SCRAPE_SERIES:
        return True
    series = declared_series()
    if name in series:
        return True
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and isinstance(series.get(name.removesuffix(suffix)), Histogram):
            return True
    return False


# -- PromQL -----------------------------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
# Label lists of aggregations and vector matching: ``by (le, service)``, ``on (system)``, ...
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_DURATIONS_AFTER_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+", re.IGNORECASE)
_IDENTIFIER = re.compile(r"(?<![\w.$:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan", "atan2",
})


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (function names, keywords and labels left out).

    Good enough for the expressions written here: no ``{__name__=...}`` selectors.
    """
    text = _STRINGS.sub('""', expr)
    while True:  # matchers may hold strings only, but be safe with nesting
        stripped = _MATCHERS.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    text = _DURATIONS_AFTER_OFFSET.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def undeclared(exprs: Iterable[str]) -> dict[str, set[str]]:
    """Expression -> the names in it that no omboard process exposes; empty when all is well."""
    missing: dict[str, set[str]] = {}
    for expr in exprs:
        unknown = {name for name in promql_metric_names(expr) if not is_declared(name)}
        if unknown:
            missing[expr] = unknown
    return missing

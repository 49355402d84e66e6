"""The Prometheus alert rules: valid, unit-tested with promtool, and reading only real metrics.

promtool comes with Debian's ``prometheus`` package (``.ci/run`` installs it). Without it these tests
fail rather than skip: untested alerts are how a page never comes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.metric_names import promql_metric_names, undeclared

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "omboard.rules.yml"
RULE_TESTS = PROMETHEUS / "rules" / "omboard.rules.test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: install Debian's prometheus package "
            "(apt-get install -y prometheus; .ci/run does) to check and test the alert rules",
            pytrace=False,
        )
    return path


def _run(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False
    )


def _rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules(promtool: str) -> None:
    result = _run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = _run(promtool, "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_prometheus_config(promtool: str) -> None:
    result = _run(promtool, "check", "config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_read_only_declared_metrics() -> None:
    exprs = [rule["expr"] for rule in _rules()]
    assert undeclared(exprs) == {}, "alert rules query metrics that services/runtime/metrics.py does not declare"


def test_every_alert_has_severity_summary_description_and_a_wait() -> None:
    alerts = [rule for rule in _rules() if "alert" in rule]
    expected = {
        "OmboardServiceDown", "OmboardConsumerLagHigh", "OmboardConsumerLagGrowing",
        "OmboardDeadLettersGrowing", "OmboardOverdueTasksRising", "OmboardMailFailing",
    }
    assert expected <= {rule["alert"] for rule in alerts}
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert set(rule["labels"]) == {"severity"}, f"{rule['alert']}: labels beyond severity"
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert rule.get("for"), f"{rule['alert']}: no for: duration"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == [RULES.name]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert names - fired == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


def test_no_rule_aggregates_by_an_id_label() -> None:
    for rule in _rules():
        for forbidden in ("provider", "task_id", "person", "hsa", "id"):
            assert forbidden not in promql_metric_names(rule["expr"])
            assert f"by ({forbidden}" not in rule["expr"] and f", {forbidden})" not in rule["expr"], rule

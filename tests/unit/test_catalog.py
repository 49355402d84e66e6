"""The catalog: the Uppsala data file loads, covers the register, and a broken copy fails at load
naming the rule and the problem."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from schemas.catalog import DEFAULT_CATALOG, CatalogError, load_catalog
from schemas.catalog.coverage import DEFAULT_REGISTER, coverage, coverage_table, register_ids, uncovered
from schemas.catalog.model import JOINING_EVENTS, LEAVING_EVENTS, MONTHLY_SERVICE_REPORT
from schemas.catalog.schedule import BEGIN, END, schedule_table
from schemas.events import EVENT_TYPES
from services.domain.planner import Planner
from services.domain.state import ProviderState, evolve
from tests.unit import _events as ev

REPO = Path(__file__).parents[2]
REGISTER = DEFAULT_REGISTER  # the repository's copy of the team's register
CHECKLIST = REPO / "docs/source/it-system-checklista-utforare-2018.txt"
SHARED = REPO.parent / "shared/domain"  # the team's originals, where they are checked out beside
CATALOG = load_catalog()


_RAW = yaml.load(DEFAULT_CATALOG.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def raw() -> dict:
    """A fresh copy of the catalog file's data, to break."""
    return copy.deepcopy(_RAW)


def load_raw(data: dict, tmp_path: Path):
    path = tmp_path / "catalog.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(data, Dumper=dumper, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_catalog(path)


def rule_of(data: dict, rule_id: str) -> dict:
    return next(rule for rule in data["rules"] if rule["id"] == rule_id)


# -- coverage of the register ----------------------------------------------------------------------


def test_every_obligation_of_the_register_has_a_rule_or_a_no_task_reason():
    ids = register_ids(REGISTER)
    assert len(ids) == 49 and ids[0] == "G1" and ids[-1] == "HO-PH2"
    rows = coverage(CATALOG, ids)
    assert uncovered(rows) == [], "obligations with neither a rule nor a no_task reason"
    assert set(CATALOG.obligations) == set(ids), "the catalog lists exactly the register's obligations"


@pytest.mark.parametrize("copy_, original", [(REGISTER, "OBLIGATIONS.md"), (CHECKLIST, CHECKLIST.name)])
def test_the_copies_in_the_repository_are_the_teams_originals(copy_, original):
    if not (SHARED / original).exists():
        pytest.skip(f"the team's {original} is not checked out beside the project (shared/domain/)")
    assert copy_.read_bytes() == (SHARED / original).read_bytes(), f"copy shared/domain/{original} to {copy_} again"


def test_register_ids_reads_only_bold_list_entries(tmp_path):
    register = tmp_path / "OBLIGATIONS.md"
    register.write_text(
        "| **egen regi** | a table cell, not an entry |\n"
        "## G — always\n"
        "- **G1** first.\n"
        "- **HO-SB3** second, with **bold** inside.\n"
        "  - **G1** again: counted once\n"
        "Text mentioning **SB1** is not an entry.\n",
        encoding="utf-8",
    )
    assert register_ids(register) == ["G1", "HO-SB3"]


def test_coverage_rows_name_rules_triggers_and_reasons():
    rows = {row.obligation: row for row in coverage(CATALOG)}
    sb1 = rows["SB1"]
    assert sb1.rules == ("siebel-send-org-structure", "siebel-create-org-structure")
    assert sb1.triggers == ("ProviderStarted", "UnitOpened")
    assert sb1.title and sb1.no_task is None and sb1.covered
    g1 = rows["G1"]
    assert g1.rules == () and g1.no_task and g1.covered
    # Subcontractor staff's tasks carry SC2/SC3: those rules count for them too.
    assert "siebel-grant-account" in rows["SC2"].rules
    assert set(rows["SC3"].triggers) >= {"SubcontractorEnded", "StaffLeft"}
    assert rows["SB3"].triggers == (MONTHLY_SERVICE_REPORT,)


def test_an_obligation_missing_from_the_catalog_is_uncovered():
    rows = coverage(CATALOG, ["G3", "ZZ9"])
    assert uncovered(rows) == ["ZZ9"]
    assert rows[1].in_catalog is False
    assert "NOT COVERED" in coverage_table(rows)


def test_an_obligation_without_rule_or_reason_fails_at_load(tmp_path):
    data = raw()
    data["obligations"]["NH1"] = {"title": "context"}  # no rule, and no longer a no_task reason
    with pytest.raises(CatalogError, match="NH1.*no rule and no no_task reason"):
        load_raw(data, tmp_path)


# -- the Uppsala data ----------------------------------------------------------------------------------


def test_the_uppsala_catalog_loads():
    assert CATALOG.catalog == "uppsala"
    assert len(CATALOG.rules) >= 60
    for rule in CATALOG.rules:
        assert rule.instructions.sv.strip() and rule.instructions.en.strip()
        assert CATALOG.rule(rule.id) is rule


def test_every_event_type_that_changes_work_is_planned():
    planned = {trigger for rule in CATALOG.rules for trigger in rule.triggers}
    # A roster and its confirmation are planned as the StaffJoined, StaffLeft and StaffRoleChanged they stand for.
    assert planned >= set(EVENT_TYPES) - {"ContactAssigned", "ServiceReportSubmitted", "StaffRosterReported",
                                          "StaffRosterConfirmed"}
    assert MONTHLY_SERVICE_REPORT in planned
    # ServiceReportSubmitted plans nothing: it completes the report task of its unit and month.
    assert any("ServiceReportSubmitted" in rule.completed_by for rule in CATALOG.rules_for(MONTHLY_SERVICE_REPORT))


def test_rules_for_and_revoking():
    assert {rule.id for rule in CATALOG.rules_for("StaffLeft")} == {
        "siebel-revoke-account", "siths-revoke-card", "prator-revoke-access", "flexite-revoke-access",
        "phoniro-revoke-access",
    }  # fmt: skip
    assert [rule.id for rule in CATALOG.revoking("siths-grant-card")] == ["siths-revoke-card"]
    with pytest.raises(KeyError):
        CATALOG.rule("no-such-rule")


def test_every_grant_is_taken_away_by_every_way_of_leaving():
    grants = [rule for rule in CATALOG.rules if rule.is_grant]
    assert {rule.id for rule in grants} == {
        "siebel-grant-account", "siths-grant-card", "prator-grant-access", "flexite-grant-access", "phoniro-grant-access",
    }  # fmt: skip
    for grant in grants:
        assert set(grant.triggers) == set(JOINING_EVENTS)
        (revoke,) = CATALOG.revoking(grant.id)
        assert set(revoke.triggers) == set(LEAVING_EVENTS), revoke.id
        assert revoke.system == grant.system
        assert revoke.channel == grant.channel, "cancelled where it was ordered"
        assert grant.for_subcontractor_staff and grant.for_subcontractor_staff.obligation == "SC2"
        assert revoke.for_subcontractor_staff and revoke.for_subcontractor_staff.obligation == "SC3"


def test_taking_over_rules_use_one_channel():
    taking_over = [rule for rule in CATALOG.rules if rule.responsible == "taking-over-provider"]
    assert taking_over
    assert all(isinstance(rule.channel, str) for rule in taking_over)


def test_every_channel_is_described_and_used():
    used = set()
    for rule in CATALOG.rules:
        used |= set(rule.channel.values()) if isinstance(rule.channel, dict) else {rule.channel}
    assert used == set(CATALOG.channels)


def test_defaults_fill_reminders_and_escalation():
    send = CATALOG.rule("siebel-send-org-structure")
    assert send.reminders == [10, 5, 1, 0]
    assert send.escalation.after == [1, 5] and send.escalation.to == ["provider", "klk-it"]
    assert CATALOG.rule("siebel-create-org-structure").escalation.to == ["klk-it"]


def test_the_checklists_urls_are_in_the_catalog():
    text = CHECKLIST.read_text(encoding="utf-8")
    urls = set()
    for found in re.findall(r"<(http[^>]+)>", text):
        # The PDF-to-text conversion put spaces into some addresses and one twice in a row.
        for url in re.split(r"(?=http://)", found.replace(" ", "")):
            if url:
                urls.add(url)
    catalog_text = DEFAULT_CATALOG.read_text(encoding="utf-8")
    missing = sorted(url for url in urls if url not in catalog_text)
    assert missing == []


# -- validation of broken copies ---------------------------------------------------------------------


def test_a_grant_without_a_revoking_rule_on_staff_left_fails(tmp_path):
    data = raw()
    rule_of(data, "siths-revoke-card")["triggers"] = ["StaffRoleChanged", "UnitClosed"]
    with pytest.raises(CatalogError, match="siths-grant-card.*no rule revokes it on StaffLeft"):
        load_raw(data, tmp_path)
    data = raw()
    data["rules"] = [rule for rule in data["rules"] if rule["id"] != "phoniro-revoke-access"]
    with pytest.raises(CatalogError, match="phoniro-grant-access"):
        load_raw(data, tmp_path)


def test_a_taking_over_rule_with_a_channel_by_regi_fails(tmp_path):
    data = raw()
    rule_of(data, "closure-taking-over-receive-tokens")["channel"] = {"egen": "iris", "privat": "sesam"}
    with pytest.raises(CatalogError, match="closure-taking-over-receive-tokens.*regi is not known"):
        load_raw(data, tmp_path)


def test_a_taking_over_rule_must_be_a_handover(tmp_path):
    data = raw()
    del rule_of(data, "closure-taking-over-receive-tokens")["when"]
    with pytest.raises(CatalogError, match="ceases_entirely: false"):
        load_raw(data, tmp_path)


def test_depending_on_a_narrower_task_fails(tmp_path):
    data = raw()
    rule_of(data, "siebel-create-org-structure")["depends_on"] = ["siebel-order-accounts"]
    with pytest.raises(CatalogError, match="siebel-create-org-structure.*narrower"):
        load_raw(data, tmp_path)


def test_a_dependency_cycle_fails(tmp_path):
    data = raw()
    rule_of(data, "siebel-send-org-structure")["depends_on"] = ["siebel-create-org-structure"]
    with pytest.raises(CatalogError, match="cycle"):
        load_raw(data, tmp_path)


@pytest.mark.parametrize(
    "rule_id, change, message",
    [
        ("siebel-order-accounts", {"where": "somewhere"}, "where: only a rule with a single channel"),
        ("siebel-order-accounts", {"revokes": "siebel-grant-account"}, "access_for: a rule orders access or cancels it"),
        ("siebel-send-org-structure", {"revokes": "siebel-order-accounts"}, "revokes: a provider rule cancels no one's access"),
        ("closure-siebel-cancel-permissions", {"revokes": "siebel-grant-account"}, "revokes must name a unit rule with access_for"),
        ("siebel-order-accounts", {"access_for": "siths-grant-card"}, "access_for must name a person rule that grants access in siebel"),
        ("siebel-send-org-structure", {"access_for": "siebel-grant-account"}, "access_for: only a unit or subcontractor rule"),
        ("siebel-book-training", {"access_for": "siebel-grant-account", "system": "siebel"},
         "orders the access of 'siebel-grant-account' that 'siebel-order-accounts' orders already"),
        ("siebel-order-accounts", {"for_subcontractor_staff": {"obligation": "SC2", "responsible": "main-provider"}},
         "for_subcontractor_staff: only for person-scoped"),
        ("siebel-monthly-service-report", {"triggers": ["MonthlyServiceReport", "UnitClosed"]}, "cannot be combined"),
        ("siebel-monthly-service-report", {"deadline": {"offset": 5, "unit": "days"}}, "anchor month_end"),
        ("siebel-book-training", {"completed_by": ["ServiceReportSubmitted"]}, "completed_by"),
        ("siebel-revoke-account", {"triggers": ["StaffJoined", "StaffLeft"]}, "cannot be triggered by StaffJoined"),
        ("siebel-grant-account", {"for_subcontractor_staff": {"obligation": "ZZ1", "responsible": "main-provider"}},
         "obligation 'ZZ1' is not in obligations"),
        ("siebel-grant-account", {"reminders": [3, -1]}, "cannot be negative"),
        ("siebel-grant-account", {"escalation": {"after": [0], "to": ["klk-it"]}}, "start at 1"),
        ("siebel-grant-account", {"channel": "fax"}, "channel"),
        ("siebel-grant-account", {"depends_on": ["no-such-rule"]}, "unknown rule 'no-such-rule'"),
    ],
)  # fmt: skip
def test_a_broken_rule_fails_naming_it(tmp_path, rule_id, change, message):
    data = raw()
    rule_of(data, rule_id).update(copy.deepcopy(change))
    with pytest.raises(CatalogError) as caught:
        load_raw(data, tmp_path)
    assert rule_id in str(caught.value)
    assert message in str(caught.value)


def test_a_rule_for_a_no_task_obligation_fails(tmp_path):
    data = raw()
    rule_of(data, "general-appoint-contacts")["obligation"] = "G1"
    with pytest.raises(CatalogError, match="G1.*marked no_task but has a rule"):
        load_raw(data, tmp_path)


# -- a second municipality is a second file ------------------------------------------------------------


def test_a_second_municipality_is_a_second_file(tmp_path):
    data = raw()
    data.update(catalog="enkoping", municipality="Enköpings kommun", version="2027.1")
    data["channels"]["it-support"]["where"] = "support@example.se"
    # Enköping's IT does a small change in 3 weeks.
    rule_of(data, "orgchange-carry-out-small")["takes"] = {"offset": 3, "unit": "weeks"}
    other = load_raw(data, tmp_path)
    assert other.catalog == "enkoping"

    history = [ev.provider_started(), ev.org_change(size="small", decided_on="2026-03-09", effective_date="2026-04-01")]
    for catalog, due, warnings in ((CATALOG, "2026-04-07", ["date-at-risk"]), (other, "2026-03-31", [])):
        planner = Planner(catalog)
        state = ProviderState(provider_id="p1")
        state = evolve(state, history[0], planner.plan(history[0], state), catalog)
        plan = planner.plan(history[1], state)
        (carry_out,) = [task for task in plan.tasks if task.rule == "orgchange-carry-out-small"]
        assert carry_out.catalog_version == catalog.version
        assert carry_out.due.isoformat() == due  # 9 March + 4 weeks is Easter Monday: the 7th; or the checklist's 31 March
        assert [warning.code for warning in plan.warnings] == warnings
        assert carry_out.instructions.where == catalog.channels["it-support"].where


def test_the_catalog_document_lists_every_rules_clock_as_the_catalog_has_it():
    document = (Path(__file__).parents[2] / "docs" / "catalog.md").read_text(encoding="utf-8")
    assert f"{BEGIN}\n{schedule_table(CATALOG)}\n{END}" in document, \
        "docs/catalog.md's rule clocks differ from the catalog: run write_schedule_table (see the document)"
    assert "| `orgchange-carry-out-large` | OC2 | OrgChangeRequested | the event's date | -1 business day | 10 weeks |" in document

"""The read model's records beside the tasks, on a real PostgreSQL: the places people took in their
units' orders (``omboard.holdings``) and each subject's verdict on its date (``omboard.verdicts``),
projected once each, and read by provider."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.catalog import load_catalog
from schemas.identifiers import pseudonym
from schemas.parsing import parse_event
from schemas.tasks import DateVerdict, Holding
from schemas.topics import HOLDINGS, VERDICTS
from services.domain.planner import Planner
from services.domain.scheduler import date_verdict
from services.domain.state import ProviderState
from services.readmodel import queries
from services.readmodel.projection import ChangelogRecord, positions, project_holdings, project_verdicts
from tests import factories as f
from tests.support.readmodel import connect, on_pool, projected, run, table

pytestmark = pytest.mark.integration

PLANNER = Planner(load_catalog(None))
PERSON = f.hsa_id("P0042")


def test_the_places_people_took_project_once_each_and_are_read_by_provider(migrated):
    places = [Holding(person_id=f.hsa_id(f"H{i}"), unit_id="u1", grant_rule=rule, task_id=f"order-{rule}",
                      provider_id="prov-h" if i < 3 else "prov-other")
              for i in range(4) for rule in ("siebel-grant-account", "phoniro-grant-access")]
    records = [ChangelogRecord(n % 2, n // 2, place.model_dump_json().encode(), place.key) for n, place in enumerate(places)]

    async def body():
        async with await connect(migrated) as conn:
            await project_holdings(conn, HOLDINGS, records)
            await project_holdings(conn, HOLDINGS, records)  # replayed: nothing twice
            return await positions(conn, HOLDINGS)

    assert run(body) == {0: 4, 1: 4}
    assert table(migrated, "SELECT count(*) FROM holdings") == [(8,)]
    found = on_pool(migrated, lambda pool: queries.holdings(pool, "prov-h"))
    assert sorted(found, key=lambda h: h.key) == sorted(places[:6], key=lambda h: h.key)
    assert not [row for row in table(migrated, "SELECT id FROM holdings") if "SE" in row[0]], "no HSA-id in a column"


def planned_verdict(provider_id: str, start_date: str) -> DateVerdict:
    """The verdict of a real plan on a start (sent 2026-01-05): at risk for a start a week later
    (the catalog needs some 30 business days), met for one a year later."""
    event = parse_event(f.provider_started(provider_id, start_date=start_date))
    verdict = date_verdict(event, PLANNER.plan(event, ProviderState(provider_id=provider_id)))
    assert verdict is not None
    return verdict


def verdict_records(verdicts: list[DateVerdict], first: int = 0, partition: int = 0) -> list[ChangelogRecord]:
    return [ChangelogRecord(partition, first + n, verdict.model_dump_json().encode(), verdict.key)
            for n, verdict in enumerate(verdicts)]


def projected_verdicts(url: str, *batches: list[ChangelogRecord]) -> dict[int, int]:
    return projected(url, *batches, changelog_name=VERDICTS, apply=project_verdicts)


def at_risk(url: str, provider_id: str) -> list[DateVerdict]:
    return on_pool(url, lambda pool: queries.at_risk_verdicts(pool, provider_id))


def test_each_subject_s_verdict_projects_once_and_the_dates_at_risk_are_read_by_date(migrated):
    start = planned_verdict("prov-v", "2026-01-12")
    assert start.at_risk and start.earliest_feasible and start.chain
    week = dt.timedelta(days=7)
    later = start.model_copy(update={"subject": "unit-opened:u2", "event_type": "UnitOpened", "date": start.date + week})
    earlier = start.model_copy(update={"subject": f"staff-joined:{pseudonym(PERSON)}", "event_type": "StaffJoined",
                                       "date": start.date - week})
    elsewhere = planned_verdict("prov-elsewhere", "2026-01-12")
    records = verdict_records([later, start, earlier]) + verdict_records([elsewhere], partition=1)

    assert projected_verdicts(migrated, records, records) == {0: 3, 1: 1}  # replayed: the same rows
    assert at_risk(migrated, "prov-v") == [earlier, start, later]
    assert at_risk(migrated, "prov-elsewhere") == [elsewhere] and at_risk(migrated, "prov-nobody") == []
    assert table(migrated, "SELECT id, provider_id, subject, event_id, event_type, date, at_risk, earliest_feasible, "
                           "source_partition, source_offset FROM verdicts WHERE id = '" + start.key + "'") == [
        (start.key, "prov-v", "start", start.event_id, "ProviderStarted", start.date, True, start.earliest_feasible, 0, 1)]
    assert not [row for row in table(migrated, "SELECT id, subject FROM verdicts") if "SE" in "".join(row)], \
        "no HSA-id in a column"


def test_a_later_verdict_that_meets_its_date_clears_the_one_at_risk_for_good(migrated):
    late, met = planned_verdict("prov-c", "2026-01-12"), planned_verdict("prov-c", "2027-01-12")
    assert late.key == met.key and late.at_risk and not met.at_risk  # the same subject: the corrected start

    projected_verdicts(migrated, verdict_records([late]))
    assert [verdict.event_id for verdict in at_risk(migrated, "prov-c")] == [late.event_id]
    # The correction, then the late one replayed (below the stored position: passed over).
    assert projected_verdicts(migrated, verdict_records([met], first=1), verdict_records([late])) == {0: 2}
    assert at_risk(migrated, "prov-c") == []
    assert table(migrated, "SELECT event_id, at_risk, source_offset FROM verdicts") == [(met.event_id, False, 1)]
    # With the positions lost, the older record still never replaces the newer one.
    table(migrated, "DELETE FROM projection_positions")
    projected_verdicts(migrated, verdict_records([late]))
    assert table(migrated, "SELECT event_id, at_risk FROM verdicts") == [(met.event_id, False)]
    # In one batch, the last record of a subject wins: at risk again after being met.
    again = late.model_copy(update={"event_id": "evt-again"})
    projected_verdicts(migrated, verdict_records([met, again], first=2))
    assert [verdict.event_id for verdict in at_risk(migrated, "prov-c")] == ["evt-again"]


def test_a_verdict_s_tombstone_removes_it_and_one_keyed_by_another_subject_is_refused(migrated):
    late = planned_verdict("prov-t", "2026-01-12")
    projected_verdicts(migrated, verdict_records([late]))
    projected_verdicts(migrated, [ChangelogRecord(0, 1, None, late.key)])
    assert table(migrated, "SELECT count(*) FROM verdicts") == [(0,)]

    wrong = [ChangelogRecord(0, 2, late.model_dump_json().encode(), "another-key")]
    with pytest.raises(ValueError, match="is keyed 'another-key'"):
        projected_verdicts(migrated, wrong)
    assert table(migrated, "SELECT count(*) FROM verdicts") == [(0,)]
    assert projected_verdicts(migrated) == {0: 2}  # the refused batch moved no position

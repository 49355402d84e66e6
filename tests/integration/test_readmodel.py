"""The read model on a real PostgreSQL: migrations, the projection of the task changelog, and
every query, checked against the same views computed in memory from the ledgers (as the status API
computed them before issue 9).

Each test has a database of its own on the session's embedded server (``tests/integration/conftest.py``);
the query tests share one, loaded once with three planned providers whose tasks were moved by hand.
The records beside the tasks (places taken, verdicts on dates) are ``test_readmodel_beside_tasks.py``'s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pwd
import stat
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from schemas.catalog import load_catalog
from schemas.parsing import parse_event
from schemas.status import TaskStatusChange
from services.devtools.postgres import EmbeddedPostgres
from services.domain.ledger import Ledger, TaskRecord, change_status, record_task, waiting_for
from services.domain.planner import Planner
from services.domain.state import ProviderState, evolve
from services.readmodel import queries
from services.readmodel.migrate import MigrationError, migrate
from services.readmodel.projection import ChangelogRecord, positions, project
from tests import factories as f
from tests.support.readmodel import CHANGELOG, connect, on_pool, projected, run, table

pytestmark = pytest.mark.integration

CATALOG = load_catalog(None)
PLANNER = Planner(CATALOG)
NOW = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
TODAY = dt.date(2026, 2, 10)  # some of the work of a start on 2026-03-02 is overdue, some not
PERSON = f.hsa_id("P0042")


# -- the data: planned ledgers, moved by hand ----------------------------------------------------------


def planned(provider_id: str, *events: dict) -> Ledger:
    state, ledger = ProviderState(provider_id=provider_id), Ledger(provider_id=provider_id)
    for raw in events:
        event = parse_event(raw)
        plan = PLANNER.plan(event, state)
        state = evolve(state, event, plan, CATALOG)
        for task in plan.tasks:
            ledger, _ = record_task(ledger, task, NOW)
    return ledger


def move(ledger: Ledger, task_id: str, status: str, *, reason: str | None = None, n: int = 1) -> Ledger:
    change = TaskStatusChange(id=f"change-{task_id}-{status}", task_id=task_id, provider_id=ledger.provider_id,
                              status=status, by="karin", at=NOW + dt.timedelta(days=n), reason=reason)
    ledger, _ = change_status(ledger, change)
    return ledger


def first(ledger: Ledger, status: str, skip: int = 0) -> str:
    return sorted((r for r in ledger.tasks.values() if r.status == status), key=lambda r: (r.task.due, r.task.id))[skip].task.id


def dataset() -> list[Ledger]:
    a = planned("prov-a", f.provider_started("prov-a"), f.staff_joined("prov-a", person_id=PERSON))
    a = move(a, first(a, "open"), "done")  # opens what waited only for it
    a = move(a, first(a, "open"), "failed", reason="Siebel nere", n=2)
    a = move(a, first(a, "blocked"), "cancelled", n=3)
    a = move(a, first(a, "failed"), "open", n=4)
    a = move(a, first(a, "open", skip=3), "done", n=5)
    b = planned("prov-b", f.provider_started("prov-b", start_date="2026-06-01", name="Bättre Omsorg AB"))
    b = move(b, first(b, "open"), "done")
    # prov-c's unit closes before TODAY: its optional step (extended access) is past its date, not overdue.
    c = planned("prov-c", f.provider_started("prov-c", org=f.org_number(3)), f.unit_closed("prov-c", closing_date="2026-02-06"))
    # A prerequisite the read model never saw: what waits for it keeps waiting.
    missing = next(dep for r in c.tasks.values() if r.status == "blocked" for dep in r.task.depends_on)
    c = c.model_copy(update={"tasks": {k: v for k, v in c.tasks.items() if k != missing}})
    c = move(c, first(c, "open"), "failed", reason="Ingen behörighet")
    return [a, b, c]


def changelog(ledgers: list[Ledger], partitions: int = 2) -> list[ChangelogRecord]:
    next_offset = [0] * partitions
    records = []
    for i, ledger in enumerate(ledgers):
        partition = i % partitions
        for record in ledger.tasks.values():
            records.append(ChangelogRecord(partition, next_offset[partition], record.model_dump_json().encode(),
                                           record.task.id))
            next_offset[partition] += 1
    return records


def rows(ledgers: list[Ledger], keep: Callable[[TaskRecord], bool],
         key: Callable[[TaskRecord], tuple]) -> list[tuple[TaskRecord, list[str]]]:
    """What the in-memory ledger answers: the records kept, in order, with what they wait for."""
    found = [(record, ledger) for ledger in ledgers for record in ledger.tasks.values() if keep(record)]
    found.sort(key=lambda pair: key(pair[0]))
    return [(record, waiting_for(ledger, record) if record.status == "blocked" else []) for record, ledger in found]


# -- the same views in memory: what the queries must answer ------------------------------------------


def order(record: TaskRecord, today: dt.date) -> tuple:
    rank = 0 if record.overdue(today) else 1 if record.active else 2
    return (rank, record.task.due, record.task.system, record.task.obligation, record.task.id)


def matches(record: TaskRecord, system: str | None, responsible: str | None, status: str | None) -> bool:
    task = record.task
    return ((system is None or task.system == system) and (responsible is None or task.responsible == responsible)
            and (status is None or record.status == status))


def provider_summary(ledger: Ledger, today: dt.date) -> dict[str, Any]:
    records = list(ledger.tasks.values())
    counts = {status: sum(1 for r in records if r.status == status)
              for status in ("open", "blocked", "done", "cancelled", "failed")}
    active_due = [r.task.due for r in records if r.active]
    total = len(records)
    return {
        "id": ledger.provider_id,
        "name": next((r.task.provider_name for r in records if r.task.provider_name), None),
        "total": total,
        **counts,
        "overdue": sum(1 for r in records if r.overdue(today)),
        "next_due": min(active_due).isoformat() if active_due else None,
        "progress": round(100 * (counts["done"] + counts["cancelled"]) / total) if total else 100,
    }


def summaries(ledgers: list[Ledger], today: dt.date) -> list[dict[str, Any]]:
    return sorted((provider_summary(ledger, today) for ledger in ledgers),
                  key=lambda s: (-s["overdue"], s["next_due"] or "9999", s["id"]))


@pytest.fixture(scope="module")
def loaded(postgres: EmbeddedPostgres) -> Iterator[tuple[str, list[Ledger]]]:
    url = postgres.create_database(f"queries_{uuid.uuid4().hex[:12]}")
    ledgers = dataset()

    async def body() -> None:
        async with await connect(url) as conn:
            await migrate(conn)
            await project(conn, CHANGELOG, changelog(ledgers))

    run(body)
    yield url, ledgers


# -- migrations ------------------------------------------------------------------------------------------


def test_migrations_apply_once_and_make_the_tables_and_indexes(database):
    async def body():
        async with await connect(database) as conn:
            return await migrate(conn), await migrate(conn)

    applied, again = run(body)
    assert applied == ["0001_read_model", "0002_holdings", "0003_verdicts"] and again == []
    assert table(database, "SELECT version, name FROM schema_migrations ORDER BY version") == [
        (1, "0001_read_model"), (2, "0002_holdings"), (3, "0003_verdicts")]
    tables = {name for (name,) in table(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"schema_migrations", "tasks", "task_history", "projection_positions", "holdings", "verdicts"}
    indexes = dict(table(database, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
    assert {"tasks_provider", "tasks_active_due", "tasks_system", "tasks_responsible", "tasks_status",
            "task_history_task_id_n_key", "holdings_provider", "verdicts_at_risk"} <= set(indexes)
    assert "WHERE (status = ANY" in indexes["tasks_active_due"]
    assert "WHERE at_risk" in indexes["verdicts_at_risk"]
    columns = {name for (name,) in table(database, "SELECT column_name FROM information_schema.columns "
                                                   "WHERE table_name IN ('tasks', 'holdings', 'verdicts')")}
    assert not {name for name in columns if "person" in name}


def test_two_workers_migrating_at_once_apply_each_migration_once(database):
    async def body():
        first, second = await connect(database), await connect(database)
        try:
            return await asyncio.gather(migrate(first), migrate(second))
        finally:
            await first.close()
            await second.close()

    results = run(body)
    assert sorted(name for applied in results for name in applied) == ["0001_read_model", "0002_holdings", "0003_verdicts"]


def test_a_database_migrated_by_a_newer_omboard_is_refused(migrated):
    table(migrated, "INSERT INTO schema_migrations (version, name) VALUES (9, '0009_from_the_future')")

    async def body():
        async with await connect(migrated) as conn:
            await migrate(conn)

    with pytest.raises(MigrationError, match=r"version 9 \(0009_from_the_future\), newer than this omboard knows"):
        run(body)


def test_migrate_refuses_a_connection_inside_a_transaction(database):
    async def body():
        async with await psycopg.AsyncConnection.connect(database) as conn:
            await conn.execute("SELECT 1")
            await migrate(conn)

    with pytest.raises(MigrationError, match="outside a transaction"):
        run(body)


# -- the projection ----------------------------------------------------------------------------------------

ROWS = ("SELECT id, provider_id, provider_name, system, responsible, status, due, obligation, action, channel, rule, "
        "unit_id, plan_id, correlation_id, depends_on, record, source_partition, source_offset FROM tasks ORDER BY id")
HISTORY = "SELECT id, task_id, n, status, by, at, reason, change_id FROM task_history ORDER BY id"


def ends(records: list[ChangelogRecord]) -> dict[int, int]:
    found: dict[int, int] = {}
    for record in records:
        found[record.partition] = max(found.get(record.partition, 0), record.offset + 1)
    return found


def test_a_projected_task_is_its_record_in_columns_and_history(migrated):
    ledger = dataset()[0]
    records = changelog([ledger])
    assert projected(migrated, records) == {0: len(records)}
    by_id = {row[0]: row for row in table(migrated, ROWS)}
    assert set(by_id) == set(ledger.tasks)
    for task_id, record in ledger.tasks.items():
        task = record.task
        assert by_id[task_id][1:15] == (
            "prov-a", task.provider_name, task.system, task.responsible, record.status, task.due, task.obligation,
            task.action, task.channel, task.rule, task.subject.unit_id, task.plan_id, task.correlation_id,
            task.depends_on)
        assert TaskRecord.model_validate(by_id[task_id][15]) == record
    history = table(migrated, HISTORY)
    assert len(history) == sum(len(r.history) for r in ledger.tasks.values())
    moved = next(r for r in ledger.tasks.values() if len(r.history) == 3)  # open, failed, open again
    assert [row[2:] for row in history if row[1] == moved.task.id] == [
        (n, e.status, e.by, e.at, e.reason, e.change_id) for n, e in enumerate(moved.history)]
    # The person stays inside the record.
    assert table(migrated, f"SELECT count(*) FROM tasks WHERE record->'task'->'subject'->>'person_id' = '{PERSON}'") == [(4,)]


def test_projecting_the_same_records_again_changes_nothing(migrated):
    records = changelog(dataset())
    projected(migrated, records)
    before = table(migrated, ROWS), table(migrated, HISTORY), table(migrated, "SELECT id, projected_at FROM tasks")
    projected(migrated, records)  # skipped: below the stored positions
    table(migrated, "DELETE FROM projection_positions")
    after_positions = projected(migrated, records)  # the rows' own positions refuse them
    assert (table(migrated, ROWS), table(migrated, HISTORY), table(migrated, "SELECT id, projected_at FROM tasks")) == before
    assert after_positions == ends(records)


def test_an_older_record_never_replaces_a_newer_one(migrated):
    ledger = planned("prov-old", f.provider_started("prov-old"))
    task_id = first(ledger, "open")
    newer = move(ledger, task_id, "done").tasks[task_id]
    old = ChangelogRecord(0, 3, ledger.tasks[task_id].model_dump_json().encode(), task_id)
    new = ChangelogRecord(0, 7, newer.model_dump_json().encode(), task_id)

    def status() -> list[tuple]:
        return table(migrated, f"SELECT status, source_offset, (SELECT count(*) FROM task_history) FROM tasks "
                               f"WHERE id = '{task_id}'")

    projected(migrated, [new, old])  # in one batch: the later offset wins, wherever it stands
    assert status() == [("done", 7, 2)]
    projected(migrated, [old])
    table(migrated, "DELETE FROM projection_positions")
    projected(migrated, [old])
    assert status() == [("done", 7, 2)]


def test_a_tombstone_deletes_the_task_and_its_history_for_good(migrated):
    ledger = planned("prov-gone", f.provider_started("prov-gone"))
    records = changelog([ledger])
    projected(migrated, records)
    doomed = records[4]
    tombstone = ChangelogRecord(0, len(records), None, doomed.key)
    assert projected(migrated, [tombstone]) == {0: len(records) + 1}
    assert table(migrated, f"SELECT count(*) FROM tasks WHERE id = '{doomed.key}'") == [(0,)]
    assert table(migrated, f"SELECT count(*) FROM task_history WHERE task_id = '{doomed.key}'") == [(0,)]
    projected(migrated, [doomed])  # replayed from before the tombstone: it stays deleted
    assert table(migrated, "SELECT count(*) FROM tasks") == [(len(records) - 1,)]
    # A record and its tombstone in one batch: deleted (and a tombstone for a task never seen is fine).
    last = records[5]
    projected(migrated, [ChangelogRecord(0, 40, last.value, last.key), ChangelogRecord(0, 41, None, last.key),
                         ChangelogRecord(1, 0, None, "never-seen")])
    assert table(migrated, "SELECT count(*) FROM tasks") == [(len(records) - 2,)]


def test_positions_advance_per_partition_and_changelog_and_never_go_back(migrated):
    ledgers = dataset()[:2]  # prov-a on partition 0, prov-b on partition 1 (some 25-30 tasks each)
    records = changelog(ledgers)
    ends = {0: len(ledgers[0].tasks), 1: len(ledgers[1].tasks)}
    first_half = [r for r in records if r.offset < 10]
    assert projected(migrated, first_half) == {0: 10, 1: 10}
    assert projected(migrated, records) == ends
    assert projected(migrated, records[:3]) == ends
    table(migrated, "UPDATE tasks SET status = 'open'")
    assert projected(migrated, [], records[:3]) == ends  # an empty batch is fine too
    assert table(migrated, "SELECT count(*) FROM tasks WHERE status <> 'open'") == [(0,)]  # nothing replayed
    assert projected(migrated, records[:3], changelog_name="another-changelog") == {0: 3}
    assert projected(migrated, [], changelog_name="nothing-yet") == {}


def test_on_a_connection_that_is_not_autocommit_every_call_commits_its_own(migrated):
    records = changelog([planned("prov-tx", f.provider_started("prov-tx"))])

    async def body():
        async with await psycopg.AsyncConnection.connect(migrated) as conn:
            assert await positions(conn, CHANGELOG) == {}
            await project(conn, CHANGELOG, records)
            summary = await queries.provider_summaries(conn, TODAY)
            return summary, conn.info.transaction_status

    summary, state = run(body)
    assert state == psycopg.pq.TransactionStatus.IDLE and summary[0]["total"] == len(records)
    assert table(migrated, "SELECT count(*) FROM tasks") == [(len(records),)]  # seen from another connection


def test_a_record_keyed_by_another_task_is_refused(migrated):
    ledger = planned("prov-key", f.provider_started("prov-key"))
    record = changelog([ledger])[0]
    with pytest.raises(ValueError, match="is keyed 'some-other-task'"):
        projected(migrated, [ChangelogRecord(0, 0, record.value, "some-other-task")])
    assert table(migrated, "SELECT count(*) FROM tasks") == [(0,)]


def test_five_thousand_records_project_in_one_call(migrated):
    ledgers = [planned(f"bulk-{i:03d}", f.provider_started(f"bulk-{i:03d}")) for i in range(200)]
    records = changelog(ledgers, partitions=4)
    assert len(records) >= 5000  # 200 starts, some 25-30 tasks each

    async def body():
        async with await connect(migrated) as conn:
            started = asyncio.get_running_loop().time()
            await project(conn, CHANGELOG, records)
            return asyncio.get_running_loop().time() - started

    elapsed = run(body)
    assert table(migrated, "SELECT count(*) FROM tasks") == [(len(records),)]
    assert elapsed < 10, f"{len(records):,} records took {elapsed:.1f}s"  # about 0.6 s for 5,000 on a 2-core machine


# -- the queries -----------------------------------------------------------------------------------------


def test_the_data_set_has_every_kind_of_task(loaded):
    _, ledgers = loaded
    statuses = {r.status for ledger in ledgers for r in ledger.tasks.values()}
    assert statuses == {"open", "blocked", "done", "cancelled", "failed"}
    assert any(r.overdue(TODAY) for r in ledgers[0].tasks.values())
    assert any(r.active and not r.overdue(TODAY) for r in ledgers[0].tasks.values())
    assert any(waiting_for(ledgers[2], r) for r in ledgers[2].tasks.values() if r.status == "blocked")
    optional = [r for r in ledgers[2].tasks.values() if r.task.optional]
    assert optional and all(r.active and r.task.due < TODAY and not r.overdue(TODAY) for r in optional)


def test_provider_summaries_are_those_of_the_ledger(loaded):
    url, ledgers = loaded
    assert on_pool(url, lambda pool: queries.provider_summaries(pool, TODAY)) == summaries(ledgers, TODAY)
    assert on_pool(url, lambda pool: queries.provider_summaries(pool, TODAY, "prov-b")) == [
        provider_summary(ledgers[1], TODAY)]
    assert on_pool(url, lambda pool: queries.provider_summaries(pool, TODAY, "nobody")) == []
    far = dt.date(2027, 1, 1)  # everything active is overdue by then
    assert on_pool(url, lambda pool: queries.provider_summaries(pool, far)) == summaries(ledgers, far)


@pytest.mark.parametrize("filters", [
    {}, {"system": "siebel"}, {"responsible": "klk-it"}, {"status": "blocked"}, {"status": "done"},
    {"system": "phoniro", "status": "open"}, {"system": "flexite"},
])
def test_provider_tasks_are_the_ledger_s_checklist_in_its_order(loaded, filters):
    url, ledgers = loaded
    for ledger in ledgers:
        expected = rows([ledger], lambda r: matches(r, filters.get("system"), filters.get("responsible"),
                                                    filters.get("status")), lambda r: order(r, TODAY))
        assert on_pool(url, lambda pool: queries.provider_tasks(pool, ledger.provider_id, TODAY, **filters)) == expected


def test_provider_tasks_page_through_the_same_order(loaded):
    url, ledgers = loaded
    expected = rows([ledgers[0]], lambda r: True, lambda r: order(r, TODAY))

    async def pages(pool):
        found, offset = [], 0
        while page := await queries.provider_tasks(pool, "prov-a", TODAY, limit=4, offset=offset):
            assert len(page) <= 4
            found += page
            offset += 4
        return found

    assert on_pool(url, pages) == expected
    assert len(expected) == len(ledgers[0].tasks) > 4  # more than one page


@pytest.mark.parametrize("filters", [
    {}, {"provider_id": "prov-c"}, {"system": "phoniro"}, {"responsible": "klk-it"},
    {"provider_id": "prov-a", "system": "siths"}, {"provider_id": "prov-b"},
])
def test_overdue_tasks_are_the_ledger_s_oldest_first(loaded, filters):
    url, ledgers = loaded

    def keep(record: TaskRecord) -> bool:
        provider = filters.get("provider_id")
        return (record.overdue(TODAY) and (provider is None or record.task.subject.provider_id == provider)
                and matches(record, filters.get("system"), filters.get("responsible"), None))

    expected = rows(ledgers, keep, lambda r: (r.task.due, r.task.system, r.task.obligation, r.task.id))
    assert on_pool(url, lambda pool: queries.overdue_tasks(pool, TODAY, **filters)) == expected
    if len(expected) > 3:
        assert on_pool(url, lambda pool: queries.overdue_tasks(pool, TODAY, limit=2, offset=1, **filters)) == expected[1:3]


@pytest.mark.parametrize("filters", [
    {}, {"provider_id": "prov-a"}, {"system": "prator"}, {"responsible": "provider"}, {"status": "open"},
    {"obligation": "SB2"}, {"unit_id": "unit-1"}, {"overdue": True}, {"overdue": False},
    {"due_from": dt.date(2026, 2, 9), "due_to": dt.date(2026, 2, 16)}, {"due_from": dt.date(2026, 5, 1)},
    {"provider_id": "prov-a", "status": "blocked", "overdue": True}, {"obligation": "nothing"},
])
def test_tasks_filter_and_order_as_the_ledger(loaded, filters):
    url, ledgers = loaded

    def keep(record: TaskRecord) -> bool:
        task = record.task
        checks = {
            "provider_id": lambda v: task.subject.provider_id == v, "system": lambda v: task.system == v,
            "responsible": lambda v: task.responsible == v, "status": lambda v: record.status == v,
            "obligation": lambda v: task.obligation == v, "unit_id": lambda v: task.subject.unit_id == v,
            "overdue": lambda v: record.overdue(TODAY) == v, "due_from": lambda v: task.due >= v,
            "due_to": lambda v: task.due <= v,
        }
        return all(checks[name](value) for name, value in filters.items())

    expected = rows(ledgers, keep, lambda r: (r.task.subject.provider_id, r.task.due, r.task.id))
    assert on_pool(url, lambda pool: queries.tasks(pool, TODAY, **filters)) == expected
    assert on_pool(url, lambda pool: queries.count_tasks(pool, TODAY, **filters)) == len(expected)
    assert on_pool(url, lambda pool: queries.tasks(pool, TODAY, limit=5, offset=2, **filters)) == expected[2:7]


def test_a_providers_tasks_of_some_rules_are_the_ledger_s_by_due_date(loaded):
    url, ledgers = loaded
    some = ["siebel-grant-account", "siebel-order-accounts", "closure-siebel-cancel-permissions", "siebel-revoke-account"]
    for ledger in ledgers:
        expected = rows([ledger], lambda r: r.task.rule in some, lambda r: (r.task.due, r.task.id))
        assert on_pool(url, lambda pool: queries.rule_tasks(pool, ledger.provider_id, some, TODAY)) == expected
    assert on_pool(url, lambda pool: queries.rule_tasks(pool, ledgers[0].provider_id, [], TODAY)) == []


def test_one_task_with_its_provider_waiting_for_and_history(loaded):
    url, ledgers = loaded
    for ledger in ledgers:
        for record in ledger.tasks.values():
            waiting = waiting_for(ledger, record) if record.status == "blocked" else []
            assert on_pool(url, lambda pool: queries.task(pool, record.task.id)) == (ledger.provider_id, record, waiting)
    assert on_pool(url, lambda pool: queries.task(pool, "no-such-task")) is None
    # The task that failed and was opened again (the dataset's longest history but one).
    moved = next(r for r in ledgers[0].tasks.values() if any(entry.status == "failed" for entry in r.history))
    assert on_pool(url, lambda pool: queries.history(pool, moved.task.id)) == [
        {"n": n, "status": e.status, "by": e.by, "at": e.at, "reason": e.reason, "change_id": e.change_id}
        for n, e in enumerate(moved.history)]
    assert [e["status"] for e in on_pool(url, lambda pool: queries.history(pool, moved.task.id))] == ["open", "failed", "open"]
    assert on_pool(url, lambda pool: queries.history(pool, "no-such-task")) == []


def test_queries_take_a_plain_connection_too(loaded):
    url, ledgers = loaded

    async def body():
        async with await connect(url) as conn:
            return await queries.provider_summaries(conn, TODAY, "prov-c")

    assert run(body) == [provider_summary(ledgers[2], TODAY)]


def test_the_summary_of_a_provider_and_the_overdue_list_use_their_indexes(migrated):
    """Some 30,000 more tasks (copies of one provider's, for 1,000 providers): a provider's
    summary and checklist are read from the provider index, the overdue list from the partial one."""
    copied = dataset()[0]
    projected(migrated, changelog([copied]))
    table(migrated, """
        INSERT INTO tasks (id, provider_id, provider_name, system, responsible, status, due, obligation, action,
                           channel, rule, unit_id, plan_id, correlation_id, depends_on, record, source_partition,
                           source_offset)
        SELECT id || '-' || g, 'bulk-' || g, provider_name, system, responsible,
               (ARRAY['done', 'open', 'cancelled', 'blocked', 'done', 'failed'])[1 + g % 6], due + g % 90, obligation,
               action, channel, rule, unit_id, plan_id, correlation_id, depends_on, record, source_partition,
               source_offset
        FROM tasks, generate_series(1, 1000) g""")

    async def plans():
        async with await connect(migrated) as conn:
            await conn.execute("ANALYZE tasks")
            found = {}
            for name, query, params in [
                ("summary", "SELECT provider_id, count(*) FILTER (WHERE status IN ('open', 'blocked') AND due < %s), "
                            "min(due) FILTER (WHERE status IN ('open', 'blocked')) FROM tasks t WHERE provider_id = %s "
                            "GROUP BY provider_id", (TODAY, "bulk-7")),
                ("overdue", "SELECT id FROM tasks t WHERE t.status IN ('open', 'blocked') AND t.due < %s "
                            "ORDER BY t.due, t.system, t.obligation, t.id LIMIT 200", (TODAY,)),
            ]:
                cursor = await conn.execute(f"EXPLAIN {query}".encode(), params)
                found[name] = "\n".join(row[0] for row in await cursor.fetchall())
            return found

    found = run(plans)
    assert "tasks_provider" in found["summary"] and "Seq Scan" not in found["summary"], found["summary"]
    assert "tasks_active_due" in found["overdue"] and "Sort" not in found["overdue"], found["overdue"]
    assert on_pool(migrated, lambda pool: queries.provider_summaries(pool, TODAY, "bulk-7"))[0]["total"] == len(copied.tasks)


# -- the embedded server -----------------------------------------------------------------------------------


def test_a_restarted_server_keeps_its_data_and_its_port(tmp_path):
    server = EmbeddedPostgres(tmp_path / "pg").start()
    try:
        assert server.fresh and server.url == f"postgresql://omboard@127.0.0.1:{server.port}/omboard"
        assert stat.S_IMODE((tmp_path / "pg" / "data").stat().st_mode) == 0o700
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        port = server.port
        server.stop()
        server.stop()  # stopping twice is fine
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.url, connect_timeout=2)
        server.start()
        assert not server.fresh and server.port == port
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]
    finally:
        server.stop()
    with EmbeddedPostgres(tmp_path / "pg") as again:  # a new object on the same folder
        assert not again.fresh and again.port == port
        with psycopg.connect(again.url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]


# Only root hands the server to another user (PostgreSQL refuses to run as root); CI and this
# machine run as root, so it runs there; a developer's own account has nothing of it to test.
@pytest.mark.skipif(os.geteuid() != 0, reason="only a root run hands the server to the postgres user")
def test_as_root_the_server_runs_as_the_postgres_user_in_a_folder_it_may_enter(postgres, tmp_path_factory):
    with psycopg.connect(postgres.url) as conn:
        assert conn.execute("SELECT current_setting('data_directory')").fetchone() == (str(postgres.cluster_dir),)
    server_user = postgres.cluster_dir.stat().st_uid
    assert server_user != 0 and pwd.getpwuid(server_user).pw_name in ("postgres", "nobody")
    # The 0700 folders above it (pytest's, or the run's own) got the search bit for others, and only that.
    for folder in postgres.data_dir.parents:
        assert folder.stat().st_mode & stat.S_IXOTH, folder
    assert not tmp_path_factory.getbasetemp().stat().st_mode & (stat.S_IROTH | stat.S_IWOTH)

"""A provider's planning state kept in a table, one record per entity (issue 9).

Keys are JSON arrays, so no id can be mistaken for a separator:

* ``["facts", provider]``: the ``ProviderFacts`` (small; the facts of one provider);
* ``["unit", provider, unit]``: a ``UnitState``;
* ``["person", provider, person]``: a ``StaffState``;
* ``["planned", provider, "rule|unit|person"]``: the task an earlier plan made (a ``PlannedTask``;
  recorded before catalog 2026.12.8, its id alone).

Every record of a provider is written on the partition of its events, so it moves and recovers
with them. What must be listed (a provider's units; the staff of a unit) is found through indexes
in memory, derived from the table and rebuilt after partitions move. An index may name an entity
that has since moved elsewhere or was rolled back with its batch: each read checks the record, so
an index only ever needs entries added.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator

from services.domain.state import PlannedTask, ProviderFacts, StaffState, StateChanges, UnitState
from services.runtime.streams import check_fits
from services.runtime.tables import Table

FACTS, UNIT, PERSON, PLANNED = "facts", "unit", "person", "planned"


def entity_key(kind: str, provider_id: str, *rest: str) -> bytes:
    return json.dumps([kind, provider_id, *rest], separators=(",", ":")).encode()


class ProviderStore:
    def __init__(self, table: Table):
        self.table = table
        self._providers: set[str] = set()
        self._units: dict[str, set[str]] = defaultdict(set)  # provider -> unit ids
        self._staff: dict[tuple[str, str], set[str]] = defaultdict(set)  # (provider, unit) -> person ids
        self._staffed: dict[str, set[str]] = defaultdict(set)  # provider -> the units in _staff, known or not

    def state(self, provider_id: str) -> StoredState:
        return StoredState(self, provider_id)

    def provider_ids(self) -> list[str]:
        return sorted(self._providers)

    def facts(self, provider_id: str) -> ProviderFacts:
        raw = self.table.get(entity_key(FACTS, provider_id))
        return ProviderFacts.model_validate_json(raw) if raw else ProviderFacts(provider_id=provider_id)

    def unit(self, provider_id: str, unit_id: str) -> UnitState | None:
        raw = self.table.get(entity_key(UNIT, provider_id, unit_id))
        return UnitState.model_validate_json(raw) if raw else None

    def units(self, provider_id: str) -> Iterator[UnitState]:
        for unit_id in sorted(self._units.get(provider_id, ())):
            unit = self.unit(provider_id, unit_id)
            if unit is not None:
                yield unit

    def person(self, provider_id: str, person_id: str) -> StaffState | None:
        raw = self.table.get(entity_key(PERSON, provider_id, person_id))
        return StaffState.model_validate_json(raw) if raw else None

    def staff_in(self, provider_id: str, unit_id: str) -> list[tuple[str, StaffState]]:
        found = []
        for person_id in sorted(self._staff.get((provider_id, unit_id), ())):
            person = self.person(provider_id, person_id)
            if person is not None and person.unit_id == unit_id:
                found.append((person_id, person))
        return found

    def every_person(self, provider_id: str) -> Iterator[tuple[str, StaffState]]:
        """The provider's staff on every unit they were named on, a unit omboard never opened too."""
        for unit_id in sorted(self._staffed.get(provider_id, ())):
            yield from self.staff_in(provider_id, unit_id)

    def planned(self, provider_id: str, key: str) -> PlannedTask | None:
        raw = self.table.get(entity_key(PLANNED, provider_id, key))
        if not raw:
            return None
        return PlannedTask.model_validate_json(raw) if raw.startswith(b"{") else PlannedTask(task_id=raw.decode())

    @staticmethod
    def encode(changes: StateChanges) -> list[tuple[bytes, bytes]]:
        """Every record ``changes`` writes; RecordTooLarge names any that would not fit in Kafka."""
        pid = changes.facts.provider_id
        records = [(entity_key(FACTS, pid), changes.facts.model_dump_json().encode())]
        records += [(entity_key(UNIT, pid, uid), unit.model_dump_json().encode()) for uid, unit in changes.units.items()]
        records += [(entity_key(PERSON, pid, person_id), person.model_dump_json().encode())
                    for person_id, person in changes.staff.items()]
        records += [(entity_key(PLANNED, pid, key), task.model_dump_json().encode()) for key, task in changes.planned.items()]
        return [(key, check_fits(f"a planning record of provider {pid}", key, value)) for key, value in records]

    def write(self, changes: StateChanges, partition: int, records: list[tuple[bytes, bytes]] | None = None) -> None:
        """Stage what ``changes`` writes on ``partition`` (that of the event behind them)."""
        for key, value in records if records is not None else self.encode(changes):
            self.table.set(key, value, partition)
        pid = changes.facts.provider_id
        self._providers.add(pid)
        self._units[pid].update(changes.units)
        for person_id, person in changes.staff.items():
            self._staff[(pid, person.unit_id)].add(person_id)
            self._staffed[pid].add(person.unit_id)

    def rebuild(self) -> None:
        """Derive the indexes again from the table as restored: keys, and the unit of each person."""
        self._providers.clear()
        self._units.clear()
        self._staff.clear()
        self._staffed.clear()
        for key, value in self.table.items():
            kind, pid, *rest = json.loads(key)
            if kind == FACTS:
                self._providers.add(pid)
            elif kind == UNIT:
                self._units[pid].add(rest[0])
            elif kind == PERSON:
                unit_id = json.loads(value)["unit_id"]
                self._staff[(pid, unit_id)].add(rest[0])
                self._staffed[pid].add(unit_id)


class StoredState:
    """One provider's state as the table holds it: a ``StateView`` reading entity by entity."""

    def __init__(self, store: ProviderStore, provider_id: str):
        self._store = store
        self.provider_id = provider_id
        self.facts = store.facts(provider_id)

    def unit(self, unit_id: str) -> UnitState | None:
        return self._store.unit(self.provider_id, unit_id)

    def every_unit(self) -> Iterable[UnitState]:
        return self._store.units(self.provider_id)

    def person(self, person_id: str) -> StaffState | None:
        return self._store.person(self.provider_id, person_id)

    def staff_in(self, unit_id: str) -> list[tuple[str, StaffState]]:
        return self._store.staff_in(self.provider_id, unit_id)

    def every_person(self) -> Iterable[tuple[str, StaffState]]:
        return self._store.every_person(self.provider_id)

    def planned_task(self, key: str) -> str | None:
        found = self._store.planned(self.provider_id, key)
        return found.task_id if found else None

    def planned_due(self, key: str) -> dt.date | None:
        found = self._store.planned(self.provider_id, key)
        return found.due if found else None

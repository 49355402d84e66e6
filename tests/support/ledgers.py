"""The reporting worker's ledger table in memory, for the status API without a broker."""

from __future__ import annotations

from services.reporting.ledger import Ledger


class FakeStore:
    def __init__(self, *ledgers: Ledger):
        self.tables = {ledger.provider_id: ledger for ledger in ledgers}

    def load(self, provider_id: str) -> Ledger:
        return self.tables.get(provider_id) or Ledger(provider_id=provider_id)

    def provider_of(self, task_id: str) -> str | None:
        return next((pid for pid, ledger in self.tables.items() if task_id in ledger.tasks), None)

    def ledgers(self) -> list[Ledger]:
        return list(self.tables.values())

"""Coverage of the obligation register by a catalog: for every obligation, the rules that turn it
into tasks and the events that trigger them, or the reason it produces no task.

``omboard catalog coverage`` prints this table; a unit test fails when an obligation of the
register has neither a rule nor a ``no_task`` reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from schemas.catalog.model import Catalog

#: The obligation register, a copy of the team's ``shared/domain/OBLIGATIONS.md`` kept with the
#: catalog it is checked against, so an installed omboard and a clone anywhere have it.
DEFAULT_REGISTER = Path(__file__).resolve().parent / "OBLIGATIONS.md"

# A register entry is a list item that starts with the bold id: "- **HO-SB1** Siebel permissions: ..."
_ENTRY = re.compile(r"^\s*[-*]\s+\*\*([A-Z]{1,3}(?:-[A-Z]{2})?\d+)\*\*")


@dataclass(frozen=True)
class CoverageRow:
    obligation: str
    title: str
    rules: tuple[str, ...]
    triggers: tuple[str, ...]  # the event types (or MonthlyServiceReport) that plan its tasks
    no_task: str | None
    in_catalog: bool = True  # False: the register names it, the catalog does not

    @property
    def covered(self) -> bool:
        return bool(self.rules) or bool(self.no_task)


def register_ids(path: Path | str | None = None) -> list[str]:
    """The obligation ids of the register (``**ID**`` list entries), in the register's order."""
    text = Path(path or DEFAULT_REGISTER).read_text(encoding="utf-8")
    ids: list[str] = []
    for line in text.splitlines():
        match = _ENTRY.match(line)
        if match and match.group(1) not in ids:
            ids.append(match.group(1))
    return ids


def coverage(catalog: Catalog, register: list[str] | None = None) -> list[CoverageRow]:
    """One row per obligation: the catalog's, in its order, or the register's, in that order (an id
    the register names and the catalog lacks gets an uncovered row with ``in_catalog=False``)."""
    ids = list(register) if register is not None else list(catalog.obligations)
    rows = []
    for oid in ids:
        obligation = catalog.obligations.get(oid)
        rules = catalog.rules_of(oid)
        triggers: list[str] = []
        for rule in rules:
            triggers += [trigger for trigger in rule.triggers if trigger not in triggers]
        rows.append(
            CoverageRow(
                obligation=oid,
                title=obligation.title if obligation else "",
                rules=tuple(rule.id for rule in rules),
                triggers=tuple(triggers),
                no_task=obligation.no_task if obligation else None,
                in_catalog=obligation is not None,
            )
        )
    return rows


def uncovered(rows: list[CoverageRow]) -> list[str]:
    """The obligations with neither a rule nor a no_task reason."""
    return [row.obligation for row in rows if not row.covered]


def coverage_table(rows: list[CoverageRow]) -> str:
    """The rows as plain text, one obligation a line (for the CLI)."""
    out = []
    for row in rows:
        if row.rules:
            detail = f"{', '.join(row.rules)}  [{', '.join(row.triggers)}]"
        elif row.no_task:
            detail = f"no task: {row.no_task}"
        else:
            detail = "NOT COVERED" + ("" if row.in_catalog else " (not in the catalog)")
        out.append(f"{row.obligation:<7} {row.title}\n        {detail}")
    return "\n".join(out)

"""Each rule's clock as a Markdown table for ``docs/catalog.md``: its anchor, its lead time (the
deadline), its working time (``takes``) and what it waits for. A test keeps the document's copy
equal to the catalog's (``write_schedule_table`` writes it again)."""

from __future__ import annotations

from pathlib import Path

from schemas.catalog.model import Catalog, Deadline, Duration

BEGIN, END = "<!-- schedule-table:begin -->", "<!-- schedule-table:end -->"
_ANCHORS = {"event": "the event's date", "decided_on": "the decision", "month_end": "the month's end"}
_UNITS = {"days": "days", "business_days": "business days", "weeks": "weeks"}


def _span(offset: int, unit: str) -> str:
    if not offset:
        return "0"
    word = _UNITS[unit].removesuffix("s") if abs(offset) == 1 else _UNITS[unit]
    return f"{offset:+d} {word}"


def _lead(deadline: Deadline) -> str:
    roll = "" if deadline.roll == "none" or deadline.unit == "business_days" else f", rolled {deadline.roll}"
    return f"{_span(deadline.offset, deadline.unit)}{roll}"


def _takes(takes: Duration) -> str:
    return _span(takes.offset, takes.unit).removeprefix("+") if takes.offset else "–"


def schedule_table(catalog: Catalog) -> str:
    rows = ["| rule | obligation | triggers | anchor | lead time | working time | waits for |",
            "|---|---|---|---|---|---|---|"]
    for rule in catalog.rules:
        rows.append(" | ".join([
            f"| `{rule.id}`", rule.obligation, ", ".join(rule.triggers), _ANCHORS[rule.deadline.anchor],
            _lead(rule.deadline), _takes(rule.takes) + (" (optional)" if rule.optional else ""),
            ", ".join(f"`{dependency}`" for dependency in rule.depends_on) or "–",
        ]) + " |")
    return "\n".join(rows)


def write_schedule_table(catalog: Catalog, document: Path) -> None:
    """Put ``catalog``'s table between the markers of ``document``."""
    text = document.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    document.write_text(f"{head}{BEGIN}\n{schedule_table(catalog)}\n{END}{tail}", encoding="utf-8")

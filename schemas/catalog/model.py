"""The catalog model: every obligation of the checklist as data.

Code never names an obligation; a rule in the catalog does. The loader validates the file with
these models and cross-checks references, so a broken catalog fails at load with the rule and the
field named.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, model_validator

from schemas.events import EVENT_TYPES, Contract, Regi, Service, StaffRole, SystemId
from schemas.tasks import Channel, Responsible

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=80)]
ObligationId = Annotated[str, Field(pattern=r"^[A-Z]{1,3}(-[A-Z]{2})?\d+$")]

#: A trigger that is not an upstream event: reporting opens one per month for every active unit.
MONTHLY_SERVICE_REPORT = "MonthlyServiceReport"
TRIGGERS = (*EVENT_TYPES, MONTHLY_SERVICE_REPORT)
Trigger = Literal[TRIGGERS]  # type: ignore[valid-type]


class Text(Contract):
    sv: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Condition(Contract):
    """Facts that must all hold for a rule to apply; ``any_of`` adds alternatives of which one must hold."""

    regi: Regi | None = None
    hsl: bool | None = None
    uses_flexite: bool | None = None
    services_any: list[Service] | None = None
    takeover: bool | None = None  # ProviderStarted: taking over a running business
    ceases_entirely: bool | None = None  # UnitClosed: nobody takes the business over
    size: Literal["small", "large"] | None = None  # OrgChangeRequested
    roles_any: list[StaffRole] | None = None  # person-scoped rules
    licensed: bool | None = None  # person-scoped rules
    subcontractor_staff: bool | None = None  # person-scoped rules: the person works for a subcontractor
    any_of: list["Condition"] = Field(default_factory=list)


class Deadline(Contract):
    #: ``event``: the event's own date (start, effective, closing, end, submitted);
    #: ``decided_on``: when an organisation change was decided; ``month_end``: the last day of the
    #: reported month (monthly service reports).
    anchor: Literal["event", "decided_on", "month_end"] = "event"
    offset: int = Field(ge=-400, le=400)  # negative: before the anchor
    unit: Literal["days", "business_days", "weeks"]
    #: What happens when the date is not a business day.
    roll: Literal["earlier", "later", "none"] = "earlier"


class Quantity(Contract):
    """How many of something a unit needs, e.g. expert users: 10 % of its staff, rounded up."""

    of: Literal["staff_count"] = "staff_count"
    ratio: float = Field(gt=0, le=1)
    minimum: int = Field(default=1, ge=0)


class Rule(Contract):
    id: Slug
    obligation: ObligationId
    triggers: list[Trigger] = Field(min_length=1)  # type: ignore[valid-type]
    #: One task per: provider, unit (each unit the event names), person, or subcontractor.
    scope: Literal["provider", "unit", "person", "subcontractor"]
    when: Condition = Field(default_factory=Condition)
    system: SystemId
    action: Slug
    #: One channel, or one per regi (egen regi orders in Iris, private providers elsewhere).
    channel: Channel | dict[Regi, Channel]
    responsible: Responsible
    deadline: Deadline
    #: Business days before the due date on which the responsible party is reminded (0: on the day).
    reminders: list[int] = Field(default_factory=lambda: [10, 5, 1, 0])
    depends_on: list[Slug] = Field(default_factory=list)
    quantity: Quantity | None = None
    #: For a person-scoped cancellation: the grant rule whose access it takes away.
    revokes: Slug | None = None
    #: Who is told at once when the deadline has already passed when the task is planned.
    late_notify: list[Responsible] = Field(default_factory=list)
    instructions: Text

    @model_validator(mode="after")
    def _coherent(self) -> "Rule":
        if self.revokes and self.scope != "person":
            raise ValueError("revokes: only a person-scoped rule can cancel a person's access")
        if any(days < 0 for days in self.reminders):
            raise ValueError("reminders: days before the deadline cannot be negative")
        return self


class Obligation(Contract):
    title: str
    #: Why this obligation produces no task (pure context); a rule-less obligation must say so.
    no_task: str | None = None


class ChannelInfo(Contract):
    sv: str
    en: str
    where: str | None = None  # address, portal or form URL


class CalendarSpec(Contract):
    country: str = "SE"
    categories: list[str] = Field(default_factory=lambda: ["public", "de_facto"])


class Catalog(Contract):
    catalog: Slug
    version: str = Field(min_length=1)
    municipality: str
    source: str
    calendar: CalendarSpec = Field(default_factory=CalendarSpec)
    channels: dict[Channel, ChannelInfo]
    obligations: dict[ObligationId, Obligation]
    rules: list[Rule]
    _by_id: dict[str, Rule] = PrivateAttr(default_factory=dict)

    def model_post_init(self, __context: object) -> None:
        self._by_id = {rule.id: rule for rule in self.rules}

    @model_validator(mode="after")
    def _references(self) -> "Catalog":
        rule_ids = [rule.id for rule in self.rules]
        duplicates = sorted({rid for rid in rule_ids if rule_ids.count(rid) > 1})
        if duplicates:
            raise ValueError(f"rules: the id {duplicates[0]!r} is used twice")
        by_id = {rule.id: rule for rule in self.rules}
        for rule in self.rules:
            where = f"rule {rule.id!r}"
            if rule.obligation not in self.obligations:
                raise ValueError(f"{where}: obligation {rule.obligation!r} is not in obligations")
            if self.obligations[rule.obligation].no_task:
                raise ValueError(f"{where}: obligation {rule.obligation!r} is marked no_task but has a rule")
            channels = rule.channel.values() if isinstance(rule.channel, dict) else [rule.channel]
            for channel in channels:
                if channel not in self.channels:
                    raise ValueError(f"{where}: channel {channel!r} is not described under channels")
            for dependency in rule.depends_on:
                if dependency not in by_id:
                    raise ValueError(f"{where}: depends_on names unknown rule {dependency!r}")
                if dependency == rule.id:
                    raise ValueError(f"{where}: depends_on names the rule itself")
            if rule.revokes is not None:
                granted = by_id.get(rule.revokes)
                if granted is None or granted.scope != "person":
                    raise ValueError(f"{where}: revokes must name a person-scoped rule")
        ruled = {rule.obligation for rule in self.rules}
        for oid, obligation in self.obligations.items():
            if oid not in ruled and not obligation.no_task:
                raise ValueError(f"obligation {oid!r}: has no rule and no no_task reason")
        self._check_acyclic(by_id)
        return self

    @staticmethod
    def _check_acyclic(by_id: dict[str, Rule]) -> None:
        state: dict[str, int] = {}

        def visit(rule_id: str, path: tuple[str, ...]) -> None:
            if state.get(rule_id) == 2:
                return
            if state.get(rule_id) == 1:
                raise ValueError(f"depends_on: a cycle {' -> '.join((*path, rule_id))}")
            state[rule_id] = 1
            for dependency in by_id[rule_id].depends_on:
                visit(dependency, (*path, rule_id))
            state[rule_id] = 2

        for rule_id in by_id:
            visit(rule_id, ())

    def rule(self, rule_id: str) -> Rule:
        return self._by_id[rule_id]

    def rules_for(self, trigger: str) -> list[Rule]:
        return [rule for rule in self.rules if trigger in rule.triggers]

"""The catalog model: every obligation of the checklist as data.

Code never names an obligation; a rule in the catalog does. The loader validates the file with
these models and cross-checks references, so a broken catalog fails at load with the rule and the
field named. The format is described field by field in ``docs/catalog.md``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from schemas.events import EVENT_TYPES, Contract, FlexiteUse, Regi, Service, StaffRole, SystemId
from schemas.tasks import Channel, Responsible

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=80)]
ObligationId = Annotated[str, Field(pattern=r"^[A-Z]{1,3}(-[A-Z]{2})?\d+$")]

#: Triggers that are not upstream events, both opened by reporting: one per month for every
#: active unit, and one for a roster held for an operator's word (``roster.hold_above_share``).
MONTHLY_SERVICE_REPORT = "MonthlyServiceReport"
HELD_ROSTER_TRIGGER = "RosterHeld"
TRIGGERS = (*EVENT_TYPES, MONTHLY_SERVICE_REPORT, HELD_ROSTER_TRIGGER)
#: What completes the task of a held roster: its confirmation, or a later roster that supersedes it.
ROSTER_ANSWERS = ("StaffRosterConfirmed", "StaffRosterReported")
Trigger = Literal[TRIGGERS]  # type: ignore[valid-type]

#: The events after which a person no longer has some or all of the access they were granted.
#: (A StaffRosterReported is planned as the StaffJoined, StaffLeft and StaffRoleChanged it stands for.)
LEAVING_EVENTS = ("StaffLeft", "StaffRoleChanged", "UnitClosed", "SubcontractorEnded")
#: The events that grant a person access: a start's or a new unit's staff named in it, a joiner, a new role.
JOINING_EVENTS = ("ProviderStarted", "UnitOpened", "StaffJoined", "StaffRoleChanged")
#: What a unit-level access order's end is triggered by, by the order's scope.
ENDS_OF_UNIT_ACCESS = {"unit": "UnitClosed", "subcontractor": "SubcontractorEnded"}

#: How wide a rule's task is; a task can only wait for a task at least as wide (see ``_link``).
SCOPE_WIDTH = {"provider": 0, "unit": 1, "subcontractor": 1, "person": 2}


class Text(Contract):
    sv: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Condition(Contract):
    """Facts that must all hold for a rule to apply; ``any_of`` adds alternatives of which one must hold.

    A fact the planner does not know for the event at hand never matches: ``size`` only holds for
    an OrgChangeRequested, ``ceases_entirely`` only for a UnitClosed.
    """

    regi: Regi | None = None
    hsl: bool | None = None
    uses_flexite: bool | None = None  # Flexite for anything (``flexite`` is not "none")
    flexite_any: list[FlexiteUse] | None = None  # what the provider uses Flexite for
    uses_prator: bool | None = None  # health care (HSL), or Prator's home-care category chosen
    prator_home_care: bool | None = None  # the provider chose Prator's home-care category
    services_any: list[Service] | None = None
    takeover: bool | None = None  # ProviderStarted or UnitOpened: taking over a running business
    ceases_entirely: bool | None = None  # UnitClosed: nobody takes the business over
    size: Literal["small", "large"] | None = None  # OrgChangeRequested (a move of responsibility: small)
    #: An organisation change: an OrgChangeRequested, or a move of responsibility (a StaffRoleChanged
    #: to, from or between the catalog's ``managing_roles``): "varje flytt av ansvar är en
    #: organisationsförändring".
    org_change: bool | None = None
    roles_any: list[StaffRole] | None = None  # person-scoped rules
    licensed: bool | None = None  # person-scoped rules
    subcontractor_staff: bool | None = None  # person-scoped rules: the person works for a subcontractor
    subcontractor_unit: bool | None = None  # unit-scoped rules: the unit is a subcontractor's organisation (SC1)
    any_of: list[Condition] = Field(default_factory=list)


class Deadline(Contract):
    #: ``event``: the event's own date (start, effective, closing, end, submitted);
    #: ``decided_on``: when an organisation change was decided (for a move of responsibility, which
    #: has no decision of its own, the day it was reported); ``month_end``: the last day of the
    #: reported month (monthly service reports), or of the month of the event's date.
    anchor: Literal["event", "decided_on", "month_end"] = "event"
    offset: int = Field(ge=-400, le=400)  # negative: before the anchor
    unit: Literal["days", "business_days", "weeks"]
    #: What happens when the date is not a business day.
    roll: Literal["earlier", "later", "none"] = "earlier"


class Duration(Contract):
    """How long a task takes once what it waits for is done: its working time, counted on the
    business calendar from the day the last prerequisite is due (or the event arrives)."""

    offset: int = Field(default=0, ge=0, le=400)
    unit: Literal["days", "business_days", "weeks"] = "business_days"


class Quantity(Contract):
    """How many of something a unit needs, e.g. expert users: 10 % of its staff, rounded up."""

    of: Literal["staff_count"] = "staff_count"
    ratio: float = Field(gt=0, le=1)
    minimum: int = Field(default=1, ge=0)


class Escalation(Contract):
    """Who is told, and when, that a task is still not done after its due date."""

    #: Business days after the due date on which an unfinished task is escalated.
    after: list[int] = Field(default_factory=lambda: [1, 5])
    to: list[Responsible] = Field(default_factory=lambda: ["provider", "klk-it"])

    @model_validator(mode="after")
    def _positive(self) -> Escalation:
        if any(days < 1 for days in self.after):
            raise ValueError("after: business days after the due date start at 1")
        return self


class SubcontractorStaff(Contract):
    """How a person-scoped rule's task differs when the person works for a subcontractor:
    the main provider orders (SC2) and cancels (SC3) their access, like for its own staff."""

    obligation: ObligationId
    responsible: Responsible


class AtTakeover(Contract):
    """How a rule's task reads when a running business is taken over (a ProviderStarted with
    ``takeover_from``, a UnitOpened with ``taken_over_from``): e.g. accounts without the tokens
    that stay at the unit."""

    action: Slug
    instructions: Text


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
    #: Where the work is done when the checklist names a page or an address for this very step
    #: (replaces the channel's ``where``); only with a single channel.
    where: str | None = None
    responsible: Responsible
    #: The date the checklist asks for (its lead time, counted from the anchor): the textbook date.
    deadline: Deadline
    #: The task's working time: it is due no earlier than what it waits for (or the day its event
    #: arrives) plus this, whatever its deadline says (``services.domain.scheduler``).
    takes: Duration = Field(default_factory=Duration)
    #: Business days before the due date on which the responsible party is reminded (0: on the day).
    reminders: list[int] = Field(default_factory=lambda: [10, 5, 1, 0])
    escalation: Escalation = Field(default_factory=Escalation)
    depends_on: list[Slug] = Field(default_factory=list)
    quantity: Quantity | None = None
    #: A cancellation: the grant whose access it takes away. A person rule names a person's grant
    #: rule; a unit or subcontractor rule names the unit-level order (``access_for``) it ends.
    revokes: Slug | None = None
    #: A unit or subcontractor order of access for its staff not known by name: the access the
    #: person rule named here gives a person. Its task counts them (``quantity``); staff named in
    #: the event get the person rule's task instead, and a roster's people take its places.
    access_for: Slug | None = None
    #: Person-scoped rules: obligation and responsible party when the person is a subcontractor's.
    for_subcontractor_staff: SubcontractorStaff | None = None
    #: Person rules: whether the task gives the person an access, which their leaving must take away
    #: again (a grant), or is work for them with nothing to take away (a course).
    grants_access: bool = True
    #: Events that complete this rule's task: a ServiceReportSubmitted completes the task of the
    #: unit and month it reports. Such a task's id depends only on rule, provider, unit and month.
    #: The task of a RosterHeld rule is completed by the roster's confirmation or a later roster;
    #: its id depends only on rule, provider and which roster it is.
    completed_by: list[Literal["ServiceReportSubmitted", "StaffRosterConfirmed", "StaffRosterReported"]] = Field(
        default_factory=list)
    #: What the task says instead at a takeover of a running business.
    at_takeover: AtTakeover | None = None
    #: What the instructions add for each service the provider runs (and only those).
    per_service: dict[Service, Text] = Field(default_factory=dict)
    #: A step the responsible party may take or leave (extended Siebel access by agreement): nobody
    #: is reminded of it or chased for it, and nothing waits for it.
    optional: bool = False
    #: Who is told at once when the deadline has already passed when the task is planned.
    late_notify: list[Responsible] = Field(default_factory=list)
    instructions: Text

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        if self.revokes and self.when != Condition():
            raise ValueError("when: a cancellation ends the access held, whatever the facts are now; it takes no condition")
        if self.revokes and self.scope == "provider":
            raise ValueError("revokes: a provider rule cancels no one's access (a person's, or a unit's order)")
        if self.access_for and self.scope not in ENDS_OF_UNIT_ACCESS:
            raise ValueError("access_for: only a unit or subcontractor rule orders access for staff not known by name")
        if self.access_for and self.revokes:
            raise ValueError("access_for: a rule orders access or cancels it, not both")
        if self.revokes and "StaffJoined" in self.triggers:
            raise ValueError("triggers: a cancellation (revokes) cannot be triggered by StaffJoined")
        if any(days < 0 for days in self.reminders):
            raise ValueError("reminders: days before the deadline cannot be negative")
        if self.optional and (self.reminders or self.escalation.after or self.late_notify):
            raise ValueError("optional: a step that may be left is not reminded, escalated or notified late "
                             "(reminders: [], escalation: {after: []}, no late_notify)")
        if self.where is not None and isinstance(self.channel, dict):
            raise ValueError("where: only a rule with a single channel can name its own place")
        if not self.grants_access and (self.scope != "person" or self.revokes):
            raise ValueError("grants_access: false is for a person rule that is work for the person, not a revocation")
        if self.for_subcontractor_staff is not None and self.scope != "person":
            raise ValueError("for_subcontractor_staff: only for person-scoped rules")
        if MONTHLY_SERVICE_REPORT in self.triggers:
            if self.triggers != [MONTHLY_SERVICE_REPORT]:
                raise ValueError(f"triggers: {MONTHLY_SERVICE_REPORT} cannot be combined with event triggers")
            if self.scope != "unit" or self.deadline.anchor != "month_end":
                raise ValueError(f"triggers: a {MONTHLY_SERVICE_REPORT} rule is unit-scoped with deadline anchor month_end")
        if HELD_ROSTER_TRIGGER in self.triggers and (self.triggers != [HELD_ROSTER_TRIGGER] or self.scope != "provider"
                                             or sorted(self.completed_by) != sorted(ROSTER_ANSWERS)):
            raise ValueError(f"triggers: a {HELD_ROSTER_TRIGGER} rule is provider-scoped, has no other trigger and is "
                             f"completed_by {', '.join(ROSTER_ANSWERS)}")
        reports = "ServiceReportSubmitted" in self.completed_by
        if reports and (self.scope != "unit" or self.deadline.anchor != "month_end"):
            raise ValueError("completed_by: only a unit-scoped rule with deadline anchor month_end (one task a unit and month)")
        if set(self.completed_by) & set(ROSTER_ANSWERS) and HELD_ROSTER_TRIGGER not in self.triggers:
            raise ValueError(f"completed_by: a roster's answer completes only a {HELD_ROSTER_TRIGGER} rule")
        if "taking-over-provider" in (self.responsible, *self.late_notify):
            # The planner knows the handing-over provider's facts only, not the taking-over one's.
            if self.triggers != ["UnitClosed"]:
                raise ValueError("responsible: a taking-over-provider rule is triggered by UnitClosed only")
            if self.when.ceases_entirely is not False:
                raise ValueError("when: a taking-over-provider rule needs ceases_entirely: false")
            if isinstance(self.channel, dict):
                raise ValueError("channel: the taking-over provider's regi is not known; use one channel")
        return self

    @property
    def obligations(self) -> tuple[str, ...]:
        """Every obligation this rule's tasks can carry."""
        extra = self.for_subcontractor_staff
        return (self.obligation,) if extra is None or extra.obligation == self.obligation else (self.obligation, extra.obligation)

    @property
    def of_one_closure(self) -> bool:
        """A closure's own step (triggered by UnitClosed or SubcontractorEnded only): what waits for
        it waits in that closure's plan, never for a step an earlier closure left."""
        return set(self.triggers) <= set(ENDS_OF_UNIT_ACCESS.values())

    @property
    def is_grant(self) -> bool:
        """A person-scoped rule that gives a person access (and so must be taken away again)."""
        return self.scope == "person" and self.revokes is None and self.grants_access


class RosterPolicy(Contract):
    """How much of a provider's known staff one roster may take away before it is held: the
    safety threshold identity systems keep against a truncated export."""

    hold_above_share: float = Field(default=0.2, gt=0, le=1)


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


class Defaults(Contract):
    """Values a rule takes when it does not state them."""

    reminders: list[int] | None = None
    escalation: Escalation | None = None


def _business_days(span: Deadline | Duration) -> int | None:
    """A span in business days, a week as five; None for calendar days (their count depends on the date)."""
    return {"business_days": span.offset, "weeks": span.offset * 5}.get(span.unit)


class Catalog(Contract):
    catalog: Slug
    version: str = Field(min_length=1)
    municipality: str
    source: str
    calendar: CalendarSpec = Field(default_factory=CalendarSpec)
    defaults: Defaults = Field(default_factory=Defaults)
    channels: dict[Channel, ChannelInfo]
    obligations: dict[ObligationId, Obligation]
    #: The roles that carry responsibility: a role change to, from or between them is an
    #: organisation change (``org_change``).
    managing_roles: list[StaffRole] = Field(default_factory=list)
    roster: RosterPolicy = Field(default_factory=RosterPolicy)
    rules: list[Rule]
    _by_id: dict[str, Rule] = PrivateAttr(default_factory=dict)

    def model_post_init(self, __context: object) -> None:
        self._by_id = {rule.id: rule for rule in self.rules}

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or not isinstance(raw.get("defaults"), dict) or not isinstance(raw.get("rules"), list):
            return raw
        defaults = {key: value for key, value in raw["defaults"].items() if key in ("reminders", "escalation") and value is not None}
        rules = [{**defaults, **rule} if isinstance(rule, dict) else rule for rule in raw["rules"]]
        return {**raw, "rules": rules}

    @model_validator(mode="after")
    def _references(self) -> Catalog:
        rule_ids = [rule.id for rule in self.rules]
        duplicates = sorted({rid for rid in rule_ids if rule_ids.count(rid) > 1})
        if duplicates:
            raise ValueError(f"rules: the id {duplicates[0]!r} is used twice")
        by_id = {rule.id: rule for rule in self.rules}
        for rule in self.rules:
            where = f"rule {rule.id!r}"
            for obligation in rule.obligations:
                if obligation not in self.obligations:
                    raise ValueError(f"{where}: obligation {obligation!r} is not in obligations")
                if self.obligations[obligation].no_task:
                    raise ValueError(f"{where}: obligation {obligation!r} is marked no_task but has a rule")
            channels = rule.channel.values() if isinstance(rule.channel, dict) else [rule.channel]
            for channel in channels:
                if channel not in self.channels:
                    raise ValueError(f"{where}: channel {channel!r} is not described under channels")
            for dependency in rule.depends_on:
                if dependency not in by_id:
                    raise ValueError(f"{where}: depends_on names unknown rule {dependency!r}")
                if dependency == rule.id:
                    raise ValueError(f"{where}: depends_on names the rule itself")
                if SCOPE_WIDTH[by_id[dependency].scope] > SCOPE_WIDTH[rule.scope]:
                    raise ValueError(
                        f"{where}: depends_on {dependency!r} is {by_id[dependency].scope}-scoped, narrower than this "
                        f"{rule.scope}-scoped rule; a task can only wait for one at least as wide"
                    )
            if rule.revokes is not None:
                granted = by_id.get(rule.revokes)
                if rule.scope == "person" and (granted is None or not granted.is_grant):
                    raise ValueError(f"{where}: revokes must name a person-scoped rule that grants access")
                if rule.scope != "person" and (granted is None or granted.access_for is None or granted.scope != rule.scope):
                    raise ValueError(f"{where}: revokes must name a {rule.scope} rule with access_for (a {rule.scope}'s order of access)")
            if rule.access_for is not None:
                person_rule = by_id.get(rule.access_for)
                if person_rule is None or not person_rule.is_grant or person_rule.system != rule.system:
                    raise ValueError(f"{where}: access_for must name a person rule that grants access in {rule.system}")
        # Nothing left behind: whatever a person is granted, their leaving takes away again.
        for rule in self.rules:
            if rule.is_grant and not any(
                other.revokes == rule.id and "StaffLeft" in other.triggers for other in self.rules
            ):
                raise ValueError(
                    f"rule {rule.id!r}: grants a person access but no rule revokes it on StaffLeft "
                    f"(add a rule with revokes: {rule.id} and trigger StaffLeft)"
                )
        ordering: dict[tuple[str, str], str] = {}
        for rule in self.rules:
            if rule.access_for:  # a unit holds one order an access: a second rule would hide the first
                first = ordering.setdefault((rule.scope, rule.access_for), rule.id)
                if first != rule.id:
                    raise ValueError(f"rule {rule.id!r}: orders the access of {rule.access_for!r} that {first!r} "
                                     f"orders already; one {rule.scope} rule an access (at_takeover words it otherwise)")
        for rule in self.rules:
            ending = ENDS_OF_UNIT_ACCESS.get(rule.scope)
            if rule.access_for and not any(
                other.revokes and other.scope == rule.scope and ending in other.triggers
                and by_id[other.revokes].access_for == rule.access_for for other in self.rules
            ):
                raise ValueError(f"rule {rule.id!r}: orders access but no rule cancels it on {ending} "
                                 f"(add a {rule.scope} rule with revokes: {rule.id} and trigger {ending})")
        ruled = {obligation for rule in self.rules for obligation in rule.obligations}
        for oid, obligation in self.obligations.items():
            if oid not in ruled and not obligation.no_task:
                raise ValueError(f"obligation {oid!r}: has no rule and no no_task reason")
        self._check_acyclic(by_id)
        self._check_working_times(by_id)
        return self

    @staticmethod
    def _check_working_times(by_id: dict[str, Rule]) -> None:
        """A rule's lead time leaves room for its working time after each task it waits for from the
        same event and anchor: otherwise no date would ever be early enough (the verdict would find
        none). Counted in business days, a week as five; a lead time in calendar days is not checked."""
        for rule in by_id.values():
            for dependency in rule.depends_on:
                before = by_id[dependency]
                if before.optional:
                    raise ValueError(f"rule {rule.id!r}: depends_on {dependency!r}, which is optional: nothing waits for it")
                spans = [_business_days(rule.deadline), _business_days(before.deadline), _business_days(rule.takes)]
                if not set(rule.triggers) & set(before.triggers) or rule.deadline.anchor != before.deadline.anchor \
                        or None in spans:
                    continue
                own, theirs, takes = spans
                if own - theirs < takes:
                    raise ValueError(
                        f"rule {rule.id!r}: takes {takes} business days, but its deadline is only {own - theirs} "
                        f"after that of {dependency!r}, which it waits for")

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
        # Read from the private storage directly: ``self._by_id`` goes through pydantic's
        # ``__getattr__``, which made this lookup a tenth of planning a start (cProfile).
        return self.__pydantic_private__["_by_id"][rule_id]

    def rules_for(self, trigger: str) -> list[Rule]:
        return [rule for rule in self.rules if trigger in rule.triggers]

    def rules_of(self, obligation: str) -> list[Rule]:
        """The rules whose tasks can carry ``obligation`` (as theirs or for subcontractor staff)."""
        return [rule for rule in self.rules if obligation in rule.obligations]

    def ordering(self, grant_rule_id: str) -> list[Rule]:
        """The unit and subcontractor rules that order ``grant_rule_id``'s access for staff not known by name."""
        return [rule for rule in self.rules if rule.access_for == grant_rule_id]

    def revoking(self, grant_rule_id: str) -> list[Rule]:
        """The rules that take away what ``grant_rule_id`` granted."""
        return [rule for rule in self.rules if rule.revokes == grant_rule_id]

"""What a rule's condition is checked against: the facts of the provider, the event, the unit and
the person at hand. Pure."""

from __future__ import annotations

from schemas.catalog.model import Condition
from schemas.events import Unit
from services.domain.state import ProviderFacts, StaffState, StateView, UnitState

#: The facts a Condition can state, each compared for equality.
_EQUAL_FACTS = (
    "regi", "hsl", "uses_flexite", "uses_prator", "prator_home_care", "takeover", "ceases_entirely", "size",
    "org_change", "licensed", "subcontractor_staff", "subcontractor_unit",
)  # fmt: skip


def holds(condition: Condition, facts: dict) -> bool:
    """Whether every stated fact matches; a fact the context does not know never matches."""
    for name in _EQUAL_FACTS:
        wanted = getattr(condition, name)
        if wanted is not None and facts.get(name) != wanted:
            return False
    if condition.services_any is not None and not set(condition.services_any) & set(facts.get("services", ())):
        return False
    if condition.roles_any is not None and facts.get("role") not in condition.roles_any:
        return False
    if condition.flexite_any is not None and facts.get("flexite") not in condition.flexite_any:
        return False
    return not condition.any_of or any(holds(option, facts) for option in condition.any_of)


def provider_facts(facts: ProviderFacts) -> dict:
    provider = facts.provider
    assert provider is not None
    return {
        "regi": provider.regi,
        "hsl": provider.hsl,
        "uses_flexite": provider.flexite_use != "none",
        "flexite": provider.flexite_use,
        "prator_home_care": provider.prator_home_care,
        # Prator is for providers with health care, and for a home-care provider that chose its
        # home-care category; logging in to it takes a SITHS card.
        "uses_prator": provider.hsl or provider.prator_home_care,
        "services": list(provider.services),
    }


def person_facts(person: StaffState, state: StateView) -> dict:
    unit = state.unit(person.unit_id)
    return {
        "role": person.role,
        "licensed": person.licensed,
        "subcontractor_staff": bool(unit and unit.subcontractor_id),
    }


def unit_facts(unit: Unit | UnitState) -> dict:
    return {"subcontractor_unit": bool(getattr(unit, "subcontractor_id", None))}

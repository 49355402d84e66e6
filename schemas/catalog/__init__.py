"""The catalog: loader and the Uppsala data file beside this module."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from schemas.catalog.model import Catalog, Rule
from schemas.parsing import field_errors

DEFAULT_CATALOG = Path(__file__).with_name("uppsala.yaml")

__all__ = ["DEFAULT_CATALOG", "Catalog", "CatalogError", "Rule", "load_catalog"]


class CatalogError(ValueError):
    """A catalog that cannot be used; the message names the file, the rule and the field."""


def _rule_name(raw: dict, location: list[str]) -> str:
    # Errors inside rules come as rules.<index>.<field>; name the rule by its id instead.
    if len(location) >= 2 and location[0] == "rules" and location[1].isdigit():
        index = int(location[1])
        rules = raw.get("rules") or []
        rule_id = rules[index].get("id") if index < len(rules) and isinstance(rules[index], dict) else None
        return f"rule {rule_id or '#' + str(index)!r} field {'.'.join(location[2:]) or '(rule)'}"
    return f"field {'.'.join(location) or '(catalog)'}"


def load_catalog(path: Path | None = None) -> Catalog:
    path = Path(path) if path else DEFAULT_CATALOG
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such file") from None
    except yaml.YAMLError as error:
        raise CatalogError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: must be a mapping with catalog, version, channels, obligations, rules")
    try:
        return Catalog.model_validate(raw)
    except ValidationError as error:
        problems = []
        for item in field_errors(error):
            location = item.field.split(".")
            problems.append(f"{_rule_name(raw, location)}: {item.reason}")
        raise CatalogError(f"{path}: " + "; ".join(problems)) from None

"""Swedish identifiers that arrive in events: organisation numbers and HSA-ids.

Both are checked with the Luhn checksum the Swedish Tax Agency uses. A personal identity number
has the same shape as an organisation number, so messages here never repeat the value they reject.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

_ORG_NUMBER = re.compile(r"^([0-9]{6})-?([0-9]{4})$")  # [0-9]: \d takes other scripts' digits too
_HSA_ID = re.compile(r"^SE([0-9]{10})-[A-Za-z0-9]{1,20}$")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def normalize_org_number(value: str) -> str:
    """Return the number as NNNNNN-NNNN, or raise ValueError without echoing it."""
    match = _ORG_NUMBER.match(value.strip())
    if not match:
        raise ValueError("must be ten digits, written NNNNNN-NNNN")
    digits = match.group(1) + match.group(2)
    if int(digits[2]) < 2:
        # The third digit of a legal entity's number is 2 or more; a month (0 or 1) means
        # someone sent a personal identity number, which must not enter the system.
        raise ValueError("is not an organisation number of a legal entity (third digit must be 2-9)")
    if not luhn_valid(digits):
        raise ValueError("has a wrong check digit")
    return f"{digits[:6]}-{digits[6:]}"


def validate_hsa_id(value: str) -> str:
    match = _HSA_ID.match(value.strip())
    if not match:
        raise ValueError("must be an HSA-id: 'SE', the issuer's ten-digit organisation number, '-', 1-20 letters or digits")
    if not luhn_valid(match.group(1)):
        raise ValueError("has an issuer organisation number with a wrong check digit")
    return value.strip()


_PERSONAL_NUMBER = re.compile(r"^(?:[0-9]{2})?([0-9]{2})([0-9]{2})([0-9]{2})[-+]?([0-9]{4})$")


def looks_like_personal_number(value: str) -> bool:
    """Whether ``value`` is a personal identity number (or a coordination number, day + 60):
    (YY)YYMMDD, an optional - or +, four digits, with a valid Luhn digit."""
    match = _PERSONAL_NUMBER.match(value.strip())
    if not match:
        return False
    _, month, day, _ = match.groups()
    day_of_month = int(day) - 60 if int(day) > 60 else int(day)
    if not (1 <= int(month) <= 12 and 1 <= day_of_month <= 31):
        return False
    return luhn_valid("".join(match.groups()))


#: Something that may be a personal identity number inside a text: checked with looks_like_personal_number.
PERSONAL_NUMBER_SHAPE = re.compile(r"(?<![0-9])(?:[0-9]{2})?[0-9]{6}[-+]?[0-9]{4}(?![0-9])")


def personal_numbers_in(text: str) -> list[str]:
    """The personal identity (or coordination) numbers written anywhere in ``text``."""
    return [match.group(0) for match in PERSONAL_NUMBER_SHAPE.finditer(text) if looks_like_personal_number(match.group(0))]


def no_personal_number_in(value: str) -> str:
    """A text validator: names, descriptions and reasons are stored, shown on the status page and
    mailed, so a personal identity number in one must not enter the system at all."""
    if personal_numbers_in(value):
        raise ValueError("contains a personal identity number; leave it out (the text is stored, shown and mailed)")
    return value


def not_a_personal_number(value: str) -> str:
    """An id validator: an id must not be a personal identity number (it would then be logged,
    mailed and put in metric labels as the id it is)."""
    if looks_like_personal_number(value):
        raise ValueError("is shaped like a personal identity number; use an id that identifies no person")
    return value


def pseudonym(person_id: str) -> str:
    """A stable, non-reversible stand-in for a person id, for logs and mail bodies."""
    return "person-" + hashlib.sha256(person_id.encode()).hexdigest()[:10]


#: Stands in for a personal identity or coordination number. Not a pseudonym: a hash of a
#: personal number is reversed by trying the few million there are.
PERSONAL_NUMBER_PLACEHOLDER = "[personnummer]"
_HSA_ID_IN_TEXT = re.compile(r"SE[0-9]{10}-[A-Za-z0-9]{1,20}")


def redact(text: str) -> str:
    """``text`` with every HSA-id replaced by its pseudonym and every personal identity or
    coordination number (with a valid check digit) by ``PERSONAL_NUMBER_PLACEHOLDER``: for logs,
    mail and API errors alike. Dates, phone and organisation numbers stay as written."""
    # Numbers first, so that the digits of a pseudonym are never taken for one.
    text = PERSONAL_NUMBER_SHAPE.sub(
        lambda match: PERSONAL_NUMBER_PLACEHOLDER if looks_like_personal_number(match.group(0)) else match.group(0), text)
    return _HSA_ID_IN_TEXT.sub(lambda match: pseudonym(match.group(0)), text)


OrgNumber = Annotated[
    str,
    AfterValidator(normalize_org_number),
    WithJsonSchema({
        "type": "string",
        "pattern": r"^\d{2}[2-9]\d{3}-?\d{4}$",
        "description": "Swedish organisation number of a legal entity, NNNNNN-NNNN, Luhn check digit",
    }),
]
HsaId = Annotated[
    str,
    AfterValidator(validate_hsa_id),
    WithJsonSchema({
        "type": "string",
        "pattern": r"^SE\d{10}-[A-Za-z0-9]{1,20}$",
        "description": "HSA-id: SE, the issuer's organisation number (Luhn), '-', 1-20 letters or digits",
    }),
]

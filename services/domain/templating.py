"""Mail templates: Jinja2, one per notification kind and language, with a fallback chain.

Templates are named ``<kind>.<language>.txt.j2`` (``reminder.sv.txt.j2``, ``late-order.en.txt.j2``)
and found in the given directories in order (the first directory holding a name wins), so an
operator's directory (``OMBOARD_MAIL_TEMPLATES_DIR``) can override single files of the built-in set
in ``services/domain/templates``.

A kind and language without a template of its own falls back to the kind's English template,
then to ``generic.<language>``, then to ``generic.en``. ``_footer.txt.j2`` is optional.

The mails are text/plain, so nothing is HTML-escaped; the subject is not a template (the domain
builds it and keeps it on one line, against header injection). Rendering is deterministic: the
same context gives the same text, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import jinja2

BUILTIN = Path(__file__).with_name("templates")
SUFFIX = ".txt.j2"
FALLBACK_LANGUAGE = "en"
GENERIC = "generic"
FOOTER = "_footer"


def _plural(count: int, one: str, many: str) -> str:
    """``{{ n|plural("uppgift", "uppgifter") }}`` -> ``1 uppgift``, ``3 uppgifter``."""
    return f"{count} {one if count == 1 else many}"


def candidates(kind: str, language: str) -> list[str]:
    """The template names tried for ``kind`` in ``language``, in order."""
    names = [f"{kind}.{language}", f"{kind}.{FALLBACK_LANGUAGE}", f"{GENERIC}.{language}", f"{GENERIC}.{FALLBACK_LANGUAGE}"]
    return [name + SUFFIX for name in dict.fromkeys(names)]


def language_of(name: str) -> str:
    """``reminder.sv.txt.j2`` -> ``sv``."""
    return name.removesuffix(SUFFIX).rsplit(".", 1)[-1]


class Templates:
    """The mail templates found in ``directories`` (the built-in set when none is given)."""

    def __init__(self, *directories: Path | str | None) -> None:
        found = [Path(d) for d in directories if d is not None] or [BUILTIN]
        self.directories = tuple(found)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in found]),
            autoescape=False,  # text/plain
            undefined=jinja2.StrictUndefined,  # a typo in a template fails loudly, not as a blank
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,  # templates are read once per process
        )
        self.env.filters["plural"] = _plural

    def resolve(self, kind: str, language: str) -> jinja2.Template:
        """The first template of the fallback chain that exists; raises TemplateNotFound."""
        names = candidates(kind, language)
        for name in names:
            try:
                return self.env.get_template(name)
            except jinja2.TemplateNotFound:
                continue
        raise jinja2.TemplateNotFound(names[0], f"none of {', '.join(names)} in {', '.join(map(str, self.directories))}")

    def optional(self, name: str) -> jinja2.Template | None:
        try:
            return self.env.get_template(name + SUFFIX)
        except jinja2.TemplateNotFound:
            return None

    def check(self, kinds: Iterable[str], languages: Iterable[str]) -> None:
        """Load (and so compile) every template a mail may need; raises on a missing or broken one."""
        for kind in kinds:
            for language in languages:
                self.resolve(kind, language)
        self.optional(FOOTER)


@lru_cache(maxsize=8)
def templates(directory: Path | None = None) -> Templates:
    """The templates of ``directory`` over the built-in ones (cached: compiled once per process)."""
    return Templates(directory, BUILTIN) if directory is not None else Templates(BUILTIN)

"""The packages keep to their layers: the domain is pure."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import services.domain

ADAPTERS = ("faust", "aiokafka", "kafka", "fastapi", "starlette", "psycopg", "psycopg_pool", "rocksdict", "uvicorn",
            "aiosmtplib", "aiosmtpd", "httpx")


def test_the_domain_loads_no_broker_http_or_database_library():
    modules = [f"services.domain.{module.name}" for module in pkgutil.iter_modules(services.domain.__path__)]
    assert {"services.domain.planner", "services.domain.ledger", "services.domain.mail"} <= set(modules)
    probe = ("import importlib, json, sys\n"
             f"for name in {modules!r}: importlib.import_module(name)\n"
             "print(json.dumps(sorted(sys.modules)))")
    # A process of its own: this one has every adapter loaded already.
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                           text=True).stdout))
    assert {name.split(".")[0] for name in loaded} & set(ADAPTERS) == set(), "the domain imports an adapter"
    ours = {name for name in loaded if name.startswith("services.")}
    assert ours - set(modules) == {"services.domain"}, "the domain imports a service or the runtime"


#: What each package of ``services`` may import of the others (``schemas`` and libraries aside).
#: The runtime and the domain know none; a service knows no other service; only the entrypoints
#: know everything (they compose it).
MAY_IMPORT = {
    "domain": set(),
    "runtime": set(),
    "http": {"runtime"},
    "adapters": {"domain", "runtime"},
    "readmodel": {"domain", "runtime"},
    "planning": {"adapters", "domain", "runtime"},
    "orgstructure": {"planning", "runtime"},  # the planning worker, for one set of systems
    "permissions": {"planning", "runtime"},
    "reporting": {"adapters", "domain", "http", "readmodel", "runtime"},
    "notifier": {"domain", "runtime"},
    "intake": {"http", "runtime"},
    "devtools": {"domain", "runtime"},
    "entrypoints": {"adapters", "devtools", "domain", "http", "intake", "notifier", "orgstructure", "permissions",
                    "planning", "readmodel", "reporting", "runtime"},
}
SERVICES = Path(services.domain.__file__).parents[1]
ROOT = "services.bootstrap"  # the composition root: it imports everything (its own test says who imports it)


def imports_between_packages() -> dict[tuple[str, str], list[str]]:
    """(package, package it imports) -> the files that do, over every module of ``services``."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(SERVICES.rglob("*.py")):
        parts = path.relative_to(SERVICES).parts
        if len(parts) < 2:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("services.") and name != ROOT and (target := name.split(".")[1]) != parts[0]:
                    found.setdefault((parts[0], target), []).append(str(path.relative_to(SERVICES)))
    return found


def test_only_the_entrypoints_import_the_composition_root():
    importers = set()
    for path in SERVICES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == ROOT:
                importers.add(path.relative_to(SERVICES).parts[0])
    assert importers == {"entrypoints"}


def test_every_package_is_in_a_layer():
    packages = {path.name for path in SERVICES.iterdir() if (path / "__init__.py").exists()}
    assert packages == set(MAY_IMPORT), "a package of services/ that test_layers.MAY_IMPORT does not place"


def test_each_package_imports_only_what_its_layer_may():
    wrong = {f"{package} -> {target}": files for (package, target), files in imports_between_packages().items()
             if target not in MAY_IMPORT[package]}
    assert wrong == {}


def test_the_packages_import_each_other_without_cycles():
    graph: dict[str, set[str]] = {}
    for package, target in imports_between_packages():
        graph.setdefault(package, set()).add(target)
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, f"an import cycle: {' -> '.join((*path, package))}"
        if package not in done:
            for target in sorted(graph.get(package, ())):
                visit(target, (*path, package))
            done.add(package)

    for package in sorted(graph):
        visit(package, ())

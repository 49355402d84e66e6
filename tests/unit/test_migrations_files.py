"""The read model's migration files, without a database: numbered 1, 2, 3, ... and shipped."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from services.readmodel.migrate import MIGRATIONS, MigrationError, migration_files

REPO = Path(__file__).resolve().parents[2]


def test_the_migrations_are_numbered_from_one_without_gaps():
    files = migration_files()
    assert [version for version, _, _ in files] == list(range(1, len(files) + 1))
    assert files[0][1] == "0001_read_model"
    assert all(path.read_text().strip() for _, _, path in files)


@pytest.mark.parametrize(("names", "why"), [
    (["0001_a.sql", "0003_c.sql"], "numbered 1, 2, 3"),
    (["0002_b.sql"], "numbered 1, 2, 3"),
    (["0001_a.sql", "0001_b.sql"], "numbered 1, 2, 3"),
    (["0001_a.sql", "2_b.sql"], "not named NNNN_lowercase_name.sql"),
    (["0001_Read-Model.sql"], "not named"),
])
def test_bad_numbering_is_refused(tmp_path, names, why):
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=why):
        migration_files(tmp_path)


def test_other_files_beside_them_are_ignored(tmp_path):
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "README.md").write_text("notes")
    assert [(v, n) for v, n, _ in migration_files(tmp_path)] == [(1, "0001_a")]


def test_the_migrations_are_package_data():
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["services.readmodel"]
    package = MIGRATIONS.parent
    assert {path for pattern in patterns for path in package.glob(pattern)} >= {p for _, _, p in migration_files()}

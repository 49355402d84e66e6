"""Build-time check (deploy/Dockerfile): every data file of the source is in the installed package.

``pip install .`` copies only the data files that pyproject's [tool.setuptools.package-data] names;
a file it leaves out (a mail template, the catalog) would only be missed at run time.
Usage: python check_package_data.py SOURCE_DIR
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

PACKAGES = ("schemas", "services")


def missing(source: Path, installed: Path) -> list[str]:
    return sorted(
        str(path.relative_to(source))
        for top in PACKAGES
        for path in (source / top).rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
        and not (installed / path.relative_to(source)).exists()
    )


if __name__ == "__main__":
    absent = missing(Path(sys.argv[1]), Path(sysconfig.get_paths()["purelib"]))
    if absent:
        sys.exit("not in the installed package (add them to [tool.setuptools.package-data]): " + ", ".join(absent))
    print("package data complete")

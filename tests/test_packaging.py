"""The distribution declares every folder it ships, so building it warns about nothing."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_shipped_folder_is_a_declared_package() -> None:
    """setuptools warns ("absent from the packages configuration") for a data folder inside
    a package that is not itself listed; `make setup` printed that for templates and static."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(setuptools["packages"])
    folders = {package: ROOT / path for package, path in setuptools["package-dir"].items()}
    shipped = set()
    for package, folder in folders.items():
        for sub in folder.rglob("*"):
            if sub.is_dir() and "__pycache__" not in sub.parts and any(p.is_file() for p in sub.iterdir()):
                shipped.add(".".join([package, *sub.relative_to(folder).parts]))
    assert shipped - declared == set()
    data = setuptools["package-data"]
    for package in shipped:
        if not any(path.suffix == ".py" for path in folders_of(package, folders).iterdir()):
            assert package in data, f"{package} ships files but has no package-data entry"


def folders_of(package: str, folders: dict[str, Path]) -> Path:
    base = max((name for name in folders if package == name or package.startswith(name + ".")), key=len)
    return folders[base].joinpath(*package[len(base):].split(".")[1:])

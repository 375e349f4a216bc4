"""A throwaway Python environment layered over the running one.

Installing a module package for real (its ``*.dist-info``, its entry point) is the only
honest test that secmod finds it; doing it in the developer's environment would
leave it behind. A :class:`ScratchVenv` is a new virtual environment whose
``site-packages`` also reads the running environment's (a ``.pth`` file calling
``site.addsitedir``, so secmod's own editable install keeps working there). Packages
are installed with ``--no-deps --no-build-isolation --no-index``: nothing is
downloaded, so it works offline and takes seconds. (Where the running environment has
no setuptools, as venvs of Python 3.12+ do not, pip builds in isolation instead and
needs the package index for setuptools.)
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

__all__ = ["ScratchVenv"]


class ScratchVenv:
    """A virtual environment in ``path`` that sees everything the running one has."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.python = self.path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

    @classmethod
    def create(cls, path: Path) -> ScratchVenv:
        venv = cls(path)
        # No pip inside: the running environment's pip installs into it (`--python`).
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv.path)], check=True)
        purelib = venv.run("-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
        parents = [p for p in site.getsitepackages() if Path(p).is_dir()]
        lines = [f"import site; site.addsitedir({p!r})" for p in parents]
        (Path(purelib) / "_secmod_parent_environment.pth").write_text("\n".join(lines) + "\n")
        return venv

    def run(self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run this environment's Python with ``args``; output captured as text."""
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS"}}
        result = subprocess.run(
            [str(self.python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def install(self, project: Path, *, copy_to: Path | None = None) -> Path:
        """Install ``project`` editable; ``copy_to`` first copies it there, so the build
        leaves no ``*.egg-info`` in the source tree. Returns where it was installed from."""
        if copy_to is not None:
            shutil.copytree(project, copy_to, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
            project = copy_to
        command = [
            sys.executable, "-m", "pip", "--python", str(self.python), "install", "--quiet",
            "--no-deps", "--disable-pip-version-check", "-e", str(project),
        ]
        if importlib.util.find_spec("setuptools") is not None:
            # The build backend is already here: build offline, in this environment.
            command[-2:-2] = ["--no-build-isolation", "--no-index"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise AssertionError(f"installing {project} failed:\n{result.stdout}\n{result.stderr}")
        return project

    def pytest(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """Run pytest in this environment (not checked: read ``returncode``)."""
        return self.run("-m", "pytest", "-q", "-p", "no:cacheprovider", *args, cwd=cwd, check=False)

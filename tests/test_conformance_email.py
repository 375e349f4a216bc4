"""The example third-party module (docs/examples/secmod-email), installed for real.

It is installed into a scratch environment (never into the development one), where
its own tests run: the conformance suite through the entry point, its mail tests
against a local SMTP server, and a login through the reference web host's JSON API. That proves a module kept outside plugins/ is found and
works without any change to secmod itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from secmod.testing.venv import ScratchVenv

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "secmod-email"


def test_example_module_is_found_by_entry_point_and_passes_its_suite(scratch_venv: ScratchVenv, tmp_path: Path) -> None:
    project = scratch_venv.install(EXAMPLE, copy_to=tmp_path / "secmod-email")
    found = scratch_venv.run(
        "-c",
        "from secmod.host.registry import ModuleRegistry, new_plugin_manager\n"
        "registry = ModuleRegistry(new_plugin_manager())\n"
        "registry.load(allow=['email'], block=[], required={'email'})\n"
        "loaded = registry.modules['email']\n"
        "print(loaded.info.friendly_name, '|', loaded.origin)",
    )
    assert found.stdout.strip() == (
        "Email Codes | entry point 'email = secmod_email:module' from distribution secmod-email 0.1.0"
    )
    result = scratch_venv.pytest("tests", "-rfEs", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    # Only the five recovery-method tests skip (the email module declares none): the other
    # contract tests, the mail tests and the web host test all ran.
    assert re.fullmatch(r"\d+ passed, 5 skipped in [\d.]+s", summary), result.stdout
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all("declares no recovery methods" in line for line in skips), skips
    assert int(summary.split()[0]) >= 18, result.stdout

"""``secmod new-module``: the generated package installs and passes its own tests."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from secmod.hookspecs import specs
from secmod.host.scaffold import check_name, write_module
from secmod.testing.venv import ScratchVenv


def test_generated_package_installs_and_passes_its_own_suite(scratch_venv: ScratchVenv, tmp_path: Path) -> None:
    project = write_module("sms_code", tmp_path)
    assert project == tmp_path / "secmod-sms-code"
    scratch_venv.install(project)
    found = scratch_venv.run(
        "-c",
        "from secmod.host.registry import ModuleRegistry, new_plugin_manager\n"
        "registry = ModuleRegistry(new_plugin_manager())\n"
        "registry.load(allow=['sms_code'], block=[], required={'sms_code'})\n"
        "print(registry.modules['sms_code'].origin)",
    )
    assert found.stdout.strip() == "entry point 'sms_code = secmod_sms_code' from distribution secmod-sms-code 0.1.0"
    result = scratch_venv.pytest(cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed in [\d.]+s", summary), summary  # nothing skipped, failed or erroring
    # Its command joins the secmod command line through register_commands.
    config = tmp_path / "secmod.toml"
    config.write_text("[modules.sms_code]\nlook_ahead = 20\n")
    shown = scratch_venv.run("-m", "secmod.host.cli", "--config", str(config), "sms_code", "settings")
    assert "look_ahead = 20" in shown.stdout and "digits = (default)" in shown.stdout, shown.stdout + shown.stderr


def test_every_hook_is_implemented_with_a_docstring(tmp_path: Path) -> None:
    source = (write_module("token", tmp_path) / "secmod_token" / "__init__.py").read_text()
    functions = {node.name: node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}
    for hook in specs.__all__:
        assert hook in functions, f"the scaffold lacks the {hook} hook"
        assert ast.get_docstring(functions[hook]), f"the scaffold's {hook} says nothing about what goes in it"
        assert [d.id for d in functions[hook].decorator_list if isinstance(d, ast.Name)] == ["hookimpl"]


def test_the_package_declares_its_entry_point_and_contract(tmp_path: Path) -> None:
    project = write_module("Push-Code", tmp_path)  # normalised to push_code
    pyproject = (project / "pyproject.toml").read_text()
    assert '[project.entry-points."secmod.modules"]\npush_code = "secmod_push_code"' in pyproject
    assert 'contract=">=1,<2"' in (project / "secmod_push_code" / "__init__.py").read_text()
    assert "class TestPushCodeConformance(ModuleContract)" in (project / "tests" / "test_conformance.py").read_text()


@pytest.mark.parametrize("name", ["", "x", "9lives", "sms code", "sms.code", "é", "a" * 32])
def test_unusable_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a usable module name"):
        check_name(name)


def test_an_existing_package_is_never_overwritten(tmp_path: Path) -> None:
    project = write_module("token", tmp_path)
    readme = project / "README.md"
    readme.write_text("my notes")
    with pytest.raises(FileExistsError, match="secmod-token already exists"):
        write_module("token", tmp_path)
    assert readme.read_text() == "my notes"


def test_the_command_writes_the_package_and_says_what_next(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from secmod.host.cli import app

    result = CliRunner().invoke(app, ["new-module", "sms_code", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'secmod-sms-code'}" in result.output
    assert (tmp_path / "secmod-sms-code" / "secmod_sms_code" / "__init__.py").is_file()
    again = CliRunner().invoke(app, ["new-module", "sms_code", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "already exists" in again.output

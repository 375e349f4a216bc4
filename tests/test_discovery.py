"""Finding modules by entry point: the loading policy against fake installed distributions.

tests/data/discovery holds ``secmod-fake-modules 1.2.3`` (a ``*.dist-info`` with
entry points, and the package they point at): a good module, a broken one, a blocked
one, one with a misspelt hook and one for an old contract. Every fake submodule
records its import in ``secmod_fake_modules.IMPORTED``, so a test can prove that
something was *never* imported. tests/data/discovery-duplicate adds
``secmod-fake-other 0.5.0``, which claims a module name the first already uses.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from secmod.hookspecs import CONTRACT_VERSION, ModuleInfo, hookimpl
from secmod.host import ModuleConflictError, ModuleLoadError

DATA = Path(__file__).parent / "data"
FAKE_NAMES = ("good", "broken", "blocked", "dupe", "typo", "ancient")
ORIGIN = "from distribution secmod-fake-modules 1.2.3"


def _forget_fake_packages() -> None:
    for name in [n for n in sys.modules if n.startswith(("secmod_fake_modules", "secmod_fake_other"))]:
        del sys.modules[name]


@pytest.fixture
def imported(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Install the fake distribution (on ``sys.path``); yields the import record."""
    monkeypatch.syspath_prepend(str(DATA / "discovery"))
    _forget_fake_packages()
    yield importlib.import_module("secmod_fake_modules").IMPORTED
    _forget_fake_packages()


@pytest.fixture
def start(make_host: Callable[..., Any], imported: list[str]) -> Callable[..., Any]:
    """A host loading installed modules; ``allow`` keeps the real built-ins out."""

    def host(*, allow: list[str] | None, block: tuple[str, ...] | list[str] = (), enable: tuple[str, ...] = ()) -> Any:
        tables = {name: {"clients": True} for name in enable}
        return make_host(tables, loading={"allow": allow, "block": list(block)})

    return host


def test_good_module_loads_with_its_distribution_and_version(start: Callable[..., Any], imported: list[str]) -> None:
    host = start(allow=["good"])
    module = host.modules["good"]
    assert (module.distribution, module.version) == ("secmod-fake-modules", "1.2.3")
    assert module.origin.entry_point == "good = secmod_fake_modules.good"
    assert module.info.friendly_name == "Good"
    assert imported == ["good"]


def test_modules_outside_the_allow_list_are_never_imported(start: Callable[..., Any], imported: list[str]) -> None:
    host = start(allow=["good"])
    assert imported == ["good"]
    assert all(host.pm.is_blocked(name) for name in FAKE_NAMES if name != "good")
    assert set(host.modules) == {"good"}


def test_broken_module_is_reported_and_skipped_when_not_enabled(
    start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    host = start(allow=["good", "broken"])
    assert set(host.modules) == {"good"}
    broken = host.registry.broken["broken"]
    assert (broken.origin.distribution, broken.origin.version) == ("secmod-fake-modules", "1.2.3")
    assert "failed to import: ModuleNotFoundError" in broken.error
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(ORIGIN in w and "skipped" in w for w in warnings), warnings


def test_broken_module_is_fatal_when_the_settings_enable_it(start: Callable[..., Any]) -> None:
    with pytest.raises(ModuleLoadError) as refused:
        start(allow=["good", "broken"], enable=("broken",))
    assert str(refused.value).startswith(
        "module 'broken' (entry point 'broken = secmod_fake_modules.broken' from distribution "
        "secmod-fake-modules 1.2.3) failed to import: ModuleNotFoundError"
    )


def test_blocked_module_is_never_imported(start: Callable[..., Any], imported: list[str]) -> None:
    # Blocking wins over the allow list, and over the settings enabling it.
    host = start(allow=["good", "blocked"], block=["blocked"], enable=("blocked",))
    assert "blocked" not in imported and "secmod_fake_modules.blocked" not in sys.modules
    assert host.pm.is_blocked("blocked")
    assert "blocked" not in host.modules and "blocked" not in host.registry.broken


def test_the_import_record_would_see_a_blocked_module_imported(start: Callable[..., Any], imported: list[str]) -> None:
    # The control for the test above: unblocked, the module is imported (and fails).
    host = start(allow=["blocked"])
    assert imported == ["blocked"]
    assert "RuntimeError: secmod imported a blocked module" in host.registry.broken["blocked"].error


def test_a_module_enabled_but_not_installed_is_fatal(start: Callable[..., Any]) -> None:
    with pytest.raises(ModuleLoadError, match="module 'absent' is enabled in the settings but no installed distribution"):
        start(allow=None, block=list(FAKE_NAMES), enable=("absent",))


def test_duplicate_module_name_is_refused_naming_both_distributions(
    start: Callable[..., Any], imported: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(DATA / "discovery-duplicate"))
    with pytest.raises(ModuleConflictError) as refused:
        start(allow=["dupe"])
    message = str(refused.value)
    assert message.startswith("module 'dupe' is provided by more than one installed distribution")
    assert "dupe = secmod_fake_modules.good:dupe' from distribution secmod-fake-modules 1.2.3" in message
    assert "dupe = secmod_fake_other:dupe' from distribution secmod-fake-other 0.5.0" in message
    assert message.endswith("uninstall all but one")
    assert imported == [], "the conflict is found before anything is imported"


def test_a_blocked_duplicate_is_not_a_conflict(
    start: Callable[..., Any], imported: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocking the name is how an operator gets going again before uninstalling one.
    monkeypatch.syspath_prepend(str(DATA / "discovery-duplicate"))
    host = start(allow=["good"], block=["dupe"])
    assert "good" in host.modules and "dupe" not in host.modules
    assert "dupe" not in imported


def test_a_host_module_cannot_shadow_an_installed_one(make_host: Callable[..., Any], imported: list[str]) -> None:
    class Impostor:
        @hookimpl
        def configure(self) -> ModuleInfo:
            return ModuleInfo(name="good", friendly_name="Impostor", short_description="Not the real one.")

    with pytest.raises(ModuleConflictError) as refused:
        make_host(loading={"allow": ["good"]}, host_kwargs={"modules": {"good": Impostor()}})
    message = str(refused.value)
    assert message.startswith("module 'good' is provided twice: entry point 'good (registered by the host application)'")
    assert message.endswith(f"entry point 'good = secmod_fake_modules.good' {ORIGIN}")


def test_a_misspelt_hook_is_refused(start: Callable[..., Any]) -> None:
    # check_pending: without it `verfy` would sit there, never called, and the module's
    # real `verify` missing would only show at the first login.
    with pytest.raises(ModuleLoadError) as refused:
        start(allow=["typo"])
    message = str(refused.value)
    assert message.startswith(f"module 'typo' (entry point 'typo = secmod_fake_modules.typo' {ORIGIN})")
    assert "implements a hook secmod does not define" in message and "verfy" in message


def test_a_module_for_another_contract_is_refused(start: Callable[..., Any]) -> None:
    expected = f"supports hook contract >=0.1,<1, but this secmod speaks {CONTRACT_VERSION}; upgrade the module or secmod"
    with pytest.raises(ModuleLoadError, match=expected) as refused:
        start(allow=["ancient"], enable=("ancient",))
    assert ORIGIN in str(refused.value)
    # Not enabled: reported, not fatal.
    host = start(allow=["ancient", "good"])
    assert expected in host.registry.broken["ancient"].error and "good" in host.modules


def _module_for(contract: str) -> object:
    from support import GuessModule

    class Versioned(GuessModule):
        @hookimpl
        def configure(self) -> ModuleInfo:
            return ModuleInfo(name="versioned", friendly_name="Versioned", short_description="-", contract=contract)

    return Versioned()


@pytest.mark.parametrize("contract", [">=1,<2", "~=1.0", "==1.*", ">=1.0"])
def test_a_range_including_this_contract_loads(make_host: Callable[..., Any], contract: str) -> None:
    host = make_host({"versioned": {"clients": True}}, host_kwargs={"modules": {"versioned": _module_for(contract)}, "entry_points": False})
    assert host.modules["versioned"].info.contract == contract


@pytest.mark.parametrize(
    ("contract", "complaint"),
    [
        (">=2,<3", "supports hook contract >=2,<3, but this secmod speaks 1.1"),
        ("<1", "supports hook contract <1, but this secmod speaks 1.1"),
        ("one point oh", "contract 'one point oh' is not a version range"),
    ],
)
def test_a_range_excluding_this_contract_is_refused(make_host: Callable[..., Any], contract: str, complaint: str) -> None:
    with pytest.raises(ModuleLoadError, match=complaint):
        make_host({"versioned": {"clients": True}}, host_kwargs={"modules": {"versioned": _module_for(contract)}, "entry_points": False})

"""Loading policy: which security modules a host loads, and how it calls one of them.

One fixed sequence, in one place (see docs/module-authors.md):

1. a fresh ``PluginManager`` with the hook specs;
2. every entry point of group ``secmod.modules`` is listed; names the settings block,
   or leave out of an allow list, are blocked *before* anything is imported;
3. two distributions providing one name are refused, naming both;
4. each remaining entry point is imported and registered inside its own ``try``; a
   failure names the entry point, distribution and version, and is fatal when the
   settings enable that module, logged and skipped otherwise;
5. ``configure`` describes each module; its name and contract range are checked;
6. ``check_pending`` refuses hook implementations that match no spec.

The host then calls one module's hooks through a caller restricted to that module.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version
from secmod.hookspecs import CONTRACT_VERSION, PROJECT, ModuleInfo, specs

from .errors import ModuleConflictError, ModuleLoadError

__all__ = ["ENTRY_POINT_GROUP", "LoadedModule", "ModuleRegistry", "new_plugin_manager"]

ENTRY_POINT_GROUP = "secmod.modules"
log = logging.getLogger("secmod.host")
MODULE_HOOKS = tuple(specs.__all__)
"""Every hook of the contract, from the specs themselves."""


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(specs)
    return pm


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a module came from, for every message about it."""

    entry_point: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"entry point {self.entry_point!r} from distribution {self.distribution} {self.version}"


@dataclass(slots=True)
class LoadedModule:
    """A registered module and its restricted hook callers."""

    name: str
    info: ModuleInfo
    origin: Origin
    plugin: object = field(repr=False)
    hooks: types.SimpleNamespace = field(repr=False, default_factory=types.SimpleNamespace)

    @property
    def distribution(self) -> str:
        return self.origin.distribution

    @property
    def version(self) -> str:
        return self.origin.version


@dataclass(frozen=True, slots=True)
class BrokenModule:
    """A module that was installed but could not be loaded (and was not required)."""

    name: str
    origin: Origin
    error: str


def _origin(ep: metadata.EntryPoint) -> Origin:
    dist = ep.dist
    return Origin(
        entry_point=f"{ep.name} = {ep.value}",
        distribution=dist.metadata["Name"] if dist is not None else "(unknown distribution)",
        version=dist.version if dist is not None else "?",
    )


class ModuleRegistry:
    """The modules one host has loaded, keyed by name."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.modules: dict[str, LoadedModule] = {}
        self.broken: dict[str, BrokenModule] = {}

    def load(
        self,
        *,
        allow: Iterable[str] | None,
        block: Iterable[str],
        required: set[str],
        entry_points: bool = True,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Run the loading sequence. ``extra`` registers module objects without an entry
        point (tests, embedding); ``required`` names modules the settings enable."""
        allowed = None if allow is None else {name.lower() for name in allow}
        blocked = {name.lower() for name in block}
        candidates: dict[str, tuple[Origin, Any]] = {}
        for name, obj in (extra or {}).items():
            candidates[name.lower()] = (Origin(f"{name} (registered by the host application)", "(in-process)", "-"), obj)
        if entry_points:
            def wanted(name: str) -> bool:
                if name in blocked or (allowed is not None and name not in allowed):
                    self.pm.set_blocked(name)  # never imported
                    log.info("module %r is blocked by the settings; not imported", name)
                    return False
                return True

            # Filtering first lets an operator block a name two distributions provide.
            for name, found in self._entry_points(wanted).items():
                if name in candidates:
                    raise ModuleConflictError(
                        f"module {name!r} is provided twice: {candidates[name][0]} and {_origin(found)}"
                    )
                candidates[name] = (_origin(found), found)
        for name in required - set(candidates) - blocked:
            if allowed is None or name in allowed:
                raise ModuleLoadError(
                    f"module {name!r} is enabled in the settings but no installed distribution "
                    f"provides it (entry point group {ENTRY_POINT_GROUP!r})"
                )
        for name, (origin, target) in candidates.items():
            try:
                self._register(name, origin, target)
            except ModuleLoadError as error:
                if name in required:
                    raise
                log.warning("%s; skipped because the settings do not enable it", error)
                self.broken[name] = BrokenModule(name, origin, str(error))
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as error:
            culprit = next((m for m in self.modules.values() if m.plugin is error.plugin), None)
            where = f"module {culprit.name!r} ({culprit.origin})" if culprit else "a plugin"
            raise ModuleLoadError(f"{where} implements a hook secmod does not define: {error}") from None
        self._build_callers()

    def _entry_points(self, wanted: Callable[[str], bool]) -> dict[str, metadata.EntryPoint]:
        found: dict[str, list[metadata.EntryPoint]] = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            found.setdefault(ep.name.lower(), []).append(ep)
        found = {name: eps for name, eps in found.items() if wanted(name)}
        unique: dict[str, metadata.EntryPoint] = {}
        for name, eps in found.items():
            origins = {(o.distribution, o.entry_point) for o in map(_origin, eps)}
            if len(origins) > 1:
                listed = "; ".join(str(_origin(ep)) for ep in eps)
                raise ModuleConflictError(
                    f"module {name!r} is provided by more than one installed distribution ({listed}); "
                    "uninstall all but one"
                )
            unique[name] = eps[0]
        return unique

    def _register(self, name: str, origin: Origin, target: Any) -> None:
        if isinstance(target, metadata.EntryPoint):
            try:
                target = target.load()
            except Exception as error:
                raise ModuleLoadError(
                    f"module {name!r} ({origin}) failed to import: {type(error).__name__}: {error}"
                ) from error
        if isinstance(target, type):
            raise ModuleLoadError(
                f"module {name!r} ({origin}) points at the class {target.__name__}; "
                "point the entry point at an instance or a Python module"
            )
        try:
            self.pm.register(target, name=name)
        except Exception as error:
            raise ModuleLoadError(f"module {name!r} ({origin}) failed to register: {error}") from error
        others = [m.plugin for m in self.modules.values()]
        try:
            info = self.pm.subset_hook_caller("configure", remove_plugins=others)()
            self._check_info(name, origin, info)
        except ModuleLoadError:
            self.pm.unregister(target)
            raise
        except Exception as error:
            self.pm.unregister(target)
            raise ModuleLoadError(
                f"module {name!r} ({origin}) failed in configure: {type(error).__name__}: {error}"
            ) from error
        implemented = {caller.name for caller in self.pm.get_hookcallers(target) or ()}
        missing = [hook for hook in specs.REQUIRED_HOOKS if hook not in implemented]
        if missing:
            self.pm.unregister(target)
            raise ModuleLoadError(
                f"module {name!r} ({origin}) does not implement the required hook(s) {', '.join(missing)}"
            )
        self.modules[name] = LoadedModule(name=name, info=info, origin=origin, plugin=target)

    def register_wrapper(self, plugin: object) -> None:
        """Register a plugin that is not a module (audit, metrics): it may only wrap hooks.

        A plain implementation would take part in every module's calls and could answer
        ``verify`` for all of them, so it is refused.
        """
        self.pm.register(plugin)
        for caller in self.pm.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                    self.pm.unregister(plugin)
                    raise ModuleLoadError(
                        f"plugin {type(plugin).__name__} may only wrap hooks "
                        f"(@hookimpl(wrapper=True)); its {caller.name} would answer for every module"
                    )

    def _build_callers(self) -> None:
        # Built once every module is registered, so each caller excludes all the others.
        for module in self.modules.values():
            rest = [m.plugin for m in self.modules.values() if m is not module]
            for hook in MODULE_HOOKS:
                setattr(module.hooks, hook, self.pm.subset_hook_caller(hook, remove_plugins=rest))

    @staticmethod
    def _check_info(name: str, origin: Origin, info: object) -> None:
        if not isinstance(info, ModuleInfo):
            raise ModuleLoadError(
                f"module {name!r} ({origin}): configure must return a ModuleInfo, got {type(info).__name__}"
            )
        if info.name != name:
            raise ModuleLoadError(
                f"module {name!r} ({origin}) calls itself {info.name!r}; the entry point name must match"
            )
        try:
            supported = SpecifierSet(info.contract)
        except InvalidSpecifier:
            raise ModuleLoadError(f"module {name!r} ({origin}): contract {info.contract!r} is not a version range") from None
        if Version(CONTRACT_VERSION) not in supported:
            raise ModuleLoadError(
                f"module {name!r} ({origin}) supports hook contract {info.contract}, "
                f"but this secmod speaks {CONTRACT_VERSION}; upgrade the module or secmod"
            )

"""A module's own table of ``secmod.toml``, for the module's commands (``register_commands``).

Modules read their settings through requests; their commands (an import tool) may also
need to read a value and write one back sealed. This is the public way to do it, so no
module reaches into the key ring or the TOML writer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from secmod.settings import ConfigError, config_path, load_settings, set_module_setting

from .sealing import SEALED_PREFIX, KeyRing, SealError

__all__ = ["ModuleSettingsFile"]


class ModuleSettingsFile:
    """``[modules.NAME]`` of one ``secmod.toml``: values read opened, values written sealed.

    :param module: the module's name (lower-cased, as in ``[modules.NAME]``).
    :param config: the file (default: ``$SECMOD_CONFIG``, else ``./secmod.toml``), as the
        ``secmod`` command itself finds it.
    :raises secmod.host.ConfigError: the file does not parse or validate, or the key
        file it names cannot be opened.
    """

    def __init__(self, module: str, config: str | os.PathLike[str] | None = None) -> None:
        self.module = module.strip().lower()
        self.path: Path = config_path(config)
        settings = load_settings(config)
        try:
            self._keyring = KeyRing.open(settings.resolve(settings.sealing.key_file))
        except SealError as error:
            raise ConfigError(f"{self.path}: {error}") from None
        self._table: dict[str, Any] = dict(settings.modules.get(self.module, {}))

    def __repr__(self) -> str:
        return f"ModuleSettingsFile({self.module!r}, {str(self.path)!r})"

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` as written, every sealed string in it opened (at any depth:
        a table of secrets is sealed value by value); ``default`` when absent.

        :raises secmod.host.ConfigError: a sealed value does not open with this key ring
            (another key file, or a value moved from another key).
        """
        if key not in self._table:
            return default
        return self._opened(self._table[key], key)

    def seal(self, path: str, value: str) -> str:
        """``value`` sealed for the dotted key ``path`` (``keys.<id>.aes_key``), to put
        into a table given to :meth:`set`. It opens only at that place."""
        return self._keyring.seal_setting(self.module, path, value)

    def set(self, key: str, value: Any) -> None:
        """Write ``value`` (a string, number, list or table) for ``key`` as given; seal
        the secrets in it first with :meth:`seal`. Comments and other values stay."""
        set_module_setting(self.path, self.module, key, value)
        self._table[key] = value

    def set_sealed(self, key: str, value: str) -> None:
        """Seal ``value`` for ``[modules.NAME] key`` and write it to the file; comments and
        every other value stay as written."""
        self.set(key, self.seal(key, value))

    def _opened(self, value: Any, path: str) -> Any:
        if isinstance(value, str) and value.startswith(SEALED_PREFIX):
            try:
                return self._keyring.unseal_setting(self.module, path, value)
            except SealError as error:
                raise ConfigError(f"{self.path}: [modules.{self.module}] {path}: {error}") from None
        if isinstance(value, dict):
            return {name: self._opened(item, f"{path}.{name}") for name, item in value.items()}
        if isinstance(value, list):
            return [self._opened(item, path) for item in value]
        return value

"""The admin's module settings form, generated from the module's pydantic settings model,
and the edit of ``secmod.toml`` that saving it makes.

Secret fields (``SecretStr``) are never sent back to the browser: the form shows whether
one is set, a blank answer keeps it, and a new value is written sealed.
"""

from __future__ import annotations

import os
import tempfile
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomlkit
from pydantic import SecretStr
from secmod.hookspecs import ModuleSettings
from secmod.host.sealing import KeyRing

__all__ = ["SettingInput", "describe_inputs", "read_form", "write_config"]

# The two "Status" boxes are drawn by the page itself, above "Configuration Settings".
STATUS_KEYS = ("clients", "admins")


@dataclass(frozen=True, slots=True)
class SettingInput:
    """One input of the generated form.

    :param kind: ``checkbox``, ``number``, ``select``, ``secret``, ``text``, ``list`` (of
        text, comma-separated), or ``unsupported`` (a type the form cannot edit: its value
        is not shown, since it may hold keys, and is kept as it is).
    :param value: the current value as text; always empty for secrets.
    :param is_set: for secrets, whether a value is stored.
    """

    name: str
    label: str
    help: str
    kind: str
    value: str = ""
    options: tuple[str, ...] = ()
    optional: bool = False
    is_set: bool = False
    step: str = "1"


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _kind(annotation: Any) -> str:
    """How the form edits a setting of this (unwrapped) type."""
    if annotation is SecretStr:
        return "secret"
    if annotation is bool:
        return "checkbox"
    if annotation in (int, float):
        return "number"
    if typing.get_origin(annotation) is Literal:
        return "select"
    if annotation is str:
        return "text"
    if annotation == list[str]:
        return "list"
    return "unsupported"


def describe_inputs(model: type[ModuleSettings], current: ModuleSettings) -> list[SettingInput]:
    """The inputs for every setting of ``model`` except the two status boxes."""
    inputs = []
    for name, info in model.model_fields.items():
        if name in STATUS_KEYS:
            continue
        annotation, optional = _unwrap_optional(info.annotation)
        value = getattr(current, name)
        common: dict[str, Any] = {"name": name, "label": info.title or _label(name), "help": info.description or "", "optional": optional}
        kind = _kind(annotation)
        if kind == "secret":
            inputs.append(SettingInput(kind=kind, is_set=value is not None and value.get_secret_value() != "", **common))
        elif kind == "checkbox":
            inputs.append(SettingInput(kind=kind, value="on" if value else "", **common))
        elif kind == "number":
            inputs.append(SettingInput(kind=kind, value="" if value is None else str(value),
                                       step="1" if annotation is int else "any", **common))
        elif kind == "select":
            options = tuple(str(option) for option in typing.get_args(annotation))
            inputs.append(SettingInput(kind=kind, value="" if value is None else str(value), options=options, **common))
        elif kind == "list":
            inputs.append(SettingInput(kind=kind, value=", ".join(value or ()), **common))
        elif kind == "text":
            inputs.append(SettingInput(kind=kind, value="" if value is None else value, **common))
        else:
            inputs.append(SettingInput(kind=kind, **common))
    return inputs


def read_form(
    model: type[ModuleSettings], current: ModuleSettings, form: Mapping[str, Any]
) -> tuple[dict[str, Any], set[str]]:
    """The raw settings the form asks for, and the names of the secrets it changes.

    Blank text means "use the default" (the key is left out); a blank secret keeps the
    stored one; an unsupported field keeps its current value.
    """
    raw: dict[str, Any] = {key: key in form for key in STATUS_KEYS}
    new_secrets: set[str] = set()
    for item in describe_inputs(model, current):
        sent = str(form.get(item.name, "")).strip()
        annotation, _ = _unwrap_optional(model.model_fields[item.name].annotation)
        if item.kind == "secret":
            if sent:
                raw[item.name] = sent
                new_secrets.add(item.name)
            elif item.is_set:
                raw[item.name] = getattr(current, item.name).get_secret_value()
        elif item.kind == "checkbox":
            raw[item.name] = item.name in form
        elif item.kind == "unsupported":
            if item.name in current.model_fields_set:
                raw[item.name] = getattr(current, item.name)
        elif sent:
            if item.kind == "list":
                raw[item.name] = [part.strip() for part in sent.split(",") if part.strip()]
            elif item.kind == "select":
                # Literal options may be numbers: give back the option itself, not its text.
                raw[item.name] = next((o for o in typing.get_args(annotation) if str(o) == sent), sent)
            else:
                raw[item.name] = sent
    return raw, new_secrets


def write_config(
    config_file: Path,
    *,
    keyring: KeyRing,
    module: str | None = None,
    validated: ModuleSettings | None = None,
    raw: Mapping[str, Any] | None = None,
    new_secrets: set[str] = frozenset(),  # type: ignore[assignment]
    top_level: Mapping[str, Any] | None = None,
) -> Path:
    """Write a candidate copy of ``config_file`` with the changes; return its path.

    The caller checks the candidate (loads a Host from it) and then moves it over the
    file with :func:`os.replace`, so a bad change never reaches the real file. Comments
    and everything the form does not manage are kept (tomlkit).
    """
    document = tomlkit.parse(config_file.read_text()) if config_file.exists() else tomlkit.document()
    for key, value in (top_level or {}).items():
        document[key] = value
    if module is not None and validated is not None and raw is not None:
        modules = document.setdefault("modules", tomlkit.table(is_super_table=True))
        table = modules.setdefault(module, tomlkit.table())
        for name, info in type(validated).model_fields.items():
            kind = _kind(_unwrap_optional(info.annotation)[0])
            if kind == "unsupported" and name not in STATUS_KEYS:
                continue  # not on the form: kept exactly as written (it may be sealed)
            if name not in raw:
                if kind != "secret" and name not in STATUS_KEYS:
                    table.pop(name, None)
                continue
            if kind == "secret":
                if name in new_secrets:
                    table[name] = keyring.seal_setting(module, name, getattr(validated, name).get_secret_value())
                continue  # unchanged secrets stay exactly as written
            value = getattr(validated, name)
            if value is None:
                table.pop(name, None)
            else:
                table[name] = value
    mode = config_file.stat().st_mode & 0o777 if config_file.exists() else 0o600
    handle, candidate = tempfile.mkstemp(prefix=f".{config_file.name}.", suffix=".candidate", dir=config_file.parent)
    with os.fdopen(handle, "w") as out:
        out.write(tomlkit.dumps(document))
    os.chmod(candidate, mode)
    return Path(candidate)

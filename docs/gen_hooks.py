"""Write docs/hooks.md from the docstrings in secmod.hookspecs: the specs are the reference.

    python docs/gen_hooks.py            # rewrite docs/hooks.md
    python docs/gen_hooks.py --check    # exit 1 when docs/hooks.md is out of date

tests/test_docs.py runs the check, so a hook added, changed or left without a
docstring fails the tests until this page is regenerated.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import sys
import textwrap
from pathlib import Path
from types import ModuleType

PAGE = Path(__file__).with_name("hooks.md")

LIFECYCLE = ("configure", "activate", "setup_user", "challenge", "verify", "recover", "describe_user", "forget_user")
"""Hooks in the order a module meets them; hooks not listed follow, alphabetically."""

_ROLE = re.compile(r":(?:class|data|meth|func|attr|exc):`~?([\w.]+)`")
_FIELD = re.compile(r"^:(param|returns?|raises)\s*([\w.]*)\s*:\s*(.*)$")


class Undocumented(Exception):
    """A hook or a type has no docstring: the reference would have a hole."""


def _inline(text: str) -> str:
    """reST inline markup to Markdown: ``x`` and :class:`a.B` become `x` and `B`."""
    text = _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    return text.replace("``", "`")


def _docstring_to_markdown(doc: str) -> str:
    """Paragraphs stay; ``:param:``/``:returns:``/``:raises:`` become a list; ``Example::``
    blocks become fenced Python."""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    fields: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _FIELD.match(line)
        if match:
            kind, name, text = match.groups()
            i += 1
            while i < len(lines) and lines[i].startswith("    "):
                text += " " + lines[i].strip()
                i += 1
            label = {"param": f"`{name}`", "returns": "returns", "return": "returns", "raises": f"raises `{name}`"}[kind]
            fields.append(f"- **{label}**: {_inline(text)}")
            continue
        if line.rstrip().endswith("::"):
            out.append(_inline(line.rstrip()[:-1]))
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i])
                i += 1
            out += ["", "```python", textwrap.dedent("\n".join(block)).strip("\n"), "```", ""]
            continue
        out.append(_inline(line))
        i += 1
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
    if fields:
        text += "\n\n" + "\n".join(fields)
    return text


def _signature(func: object) -> str:
    sig = inspect.signature(func)  # annotations stay strings (from __future__ import annotations)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {func.__name__}({params}) -> {sig.return_annotation}"


def _hook_section(name: str, func: object) -> str:
    doc = inspect.getdoc(func)
    if not doc:
        raise Undocumented(f"hook {name!r} has no docstring; the reference is generated from it")
    return "\n".join(
        [
            f"## `{name}`",
            "",
            "```python",
            "@hookimpl",
            _signature(func),
            "```",
            "",
            _docstring_to_markdown(doc),
            "",
        ]
    )


def _type_section(name: str, obj: object) -> str:
    doc = inspect.getdoc(obj)
    if not doc:
        raise Undocumented(f"type {name!r} has no docstring")
    lines = [f"### `{name}`", "", _docstring_to_markdown(doc), ""]
    if isinstance(obj, type) and issubclass(obj, enum.Enum):
        lines += ["Values: " + ", ".join(f"`{member.value}`" for member in obj), ""]
    elif dataclasses.is_dataclass(obj):
        rows = []
        for item in dataclasses.fields(obj):
            if isinstance(item.default, type):
                default = f"`{item.default.__name__}`"
            elif item.default is not dataclasses.MISSING:
                default = f"`{item.default!r}`"
            elif item.default_factory is not dataclasses.MISSING:
                default = "empty"
            else:
                default = "required"
            # Python-Markdown's tables keep a | inside a code span in its cell.
            rows.append(f"| `{item.name}` | `{item.type}` | {default} |")
        if rows:
            lines += ["| field | type | default |", "|---|---|---|", *rows, ""]
    return "\n".join(lines)


def render(specs: ModuleType | None = None, types: ModuleType | None = None) -> str:
    """The whole page. The arguments exist for the tests; the default is secmod's contract."""
    if specs is None or types is None:
        from secmod.hookspecs import specs as real_specs, types as real_types

        specs, types = real_specs, real_types
    hooks = [h for h in LIFECYCLE if h in specs.__all__] + sorted(set(specs.__all__) - set(LIFECYCLE))
    parts = [
        "# Hook reference",
        "",
        "<!-- Generated by docs/gen_hooks.py from secmod/hookspecs; edit the docstrings, not this page. -->",
        "",
        _docstring_to_markdown(specs.__doc__ or ""),
        "",
        "Every hook is imported from `secmod.hookspecs` and marked with `@hookimpl`; a module",
        "implements the ones it needs (`configure`, `setup_user`, `challenge` and `verify` at least).",
        "",
    ]
    parts += [_hook_section(name, getattr(specs, name)) for name in hooks]
    parts += [
        "## Types",
        "",
        "Everything a hook receives or returns, from `secmod.hookspecs`. All are frozen; fields",
        "that can hold a secret, a code or module state are left out of `repr`.",
        "",
    ]
    parts += [_type_section(name, getattr(types, name)) for name in types.__all__ if name != "Verdict"]
    parts += ["`Verdict` is `Accepted | Rejected`.", ""]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    page = render()
    if "--check" in argv:
        if not PAGE.exists() or PAGE.read_text() != page:
            print(f"{PAGE} is out of date: run python docs/gen_hooks.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Copy plugins/example into the template of `alertmux new-plugin` (PLUGIN_TEMPLATE in author_commands.py).

    python docs/scripts/plugin_template.py          # rewrite the template from plugins/example
    python docs/scripts/plugin_template.py --check  # exit 1 when the template is out of date

The example is the template rendered with the name "example": every "example" becomes {{name}} and every
"Example" {{Name}}. core/tests/test_conformance.py fails when the two differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "plugins" / "example"
MODULE = ROOT / "core" / "src" / "alertmux" / "builtin" / "author_commands.py"
BEGIN = "PLUGIN_TEMPLATE: dict[str, str] = {"
END = "}\n# end of PLUGIN_TEMPLATE\n"


def example_files() -> dict[str, str]:
    """The files of plugins/example that make up the template, by relative path."""
    files = {}
    for path in sorted(EXAMPLE.rglob("*")):
        relative = path.relative_to(EXAMPLE).as_posix()
        if path.is_file() and "__pycache__" not in relative and ".egg-info" not in relative:
            files[relative] = path.read_text(encoding="utf-8")
    return files


def as_template(text: str) -> str:
    """Text of the example with its name replaced by the template's placeholders."""
    return text.replace("example", "{{name}}").replace("Example", "{{Name}}")


def render_module_block() -> str:
    """The Python source of the PLUGIN_TEMPLATE dict."""
    lines = [BEGIN]
    for relative, text in example_files().items():
        body = as_template(text)
        if "'''" in body or "\\" in body:
            raise SystemExit(f"{relative}: a template file may not contain ''' or backslashes")
        lines.append(f"    {as_template(relative)!r}: '''\\\n{body}''',")
    return "\n".join(lines) + "\n" + END


def main(argv: list[str]) -> int:
    """Rewrite the template, or with ``--check`` only say whether it is current."""
    source = MODULE.read_text(encoding="utf-8")
    start = source.index(BEGIN)
    end = source.index(END, start) + len(END) if END in source else len(source)
    updated = source[:start] + render_module_block() + source[end:]
    if "--check" in argv:
        if updated != source:
            print(f"{MODULE} is out of date: run python docs/scripts/plugin_template.py", file=sys.stderr)
            return 1
        return 0
    MODULE.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

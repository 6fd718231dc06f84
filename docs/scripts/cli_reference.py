#!/usr/bin/env python3
"""Write docs/cli.md, the command-line reference, from the click commands themselves.

    python docs/scripts/cli_reference.py          # rewrite docs/cli.md
    python docs/scripts/cli_reference.py --check  # exit 1 when docs/cli.md is out of date

The commands are those of the core and of every installed plugin (`alertmux_register_commands`), as a user of
this workspace (`python3 dev.py`) gets them. tests/test_docs.py fails when docs/cli.md differs from this output.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "cli.md"

HEADER = """# Command-line reference

Generated from the commands themselves by `python docs/scripts/cli_reference.py`; `tests/test_docs.py` fails
when this file is out of date. It lists the core's commands and those the plugins installed in this workspace
register (`alertmux_register_commands`): a command's "defined in" line names its module. Every command reads
`alertmux.toml` (or `--config FILE`) and writes results to stdout, logs and progress to stderr.
"""


def root_command() -> click.Group:
    """The ``alertmux`` group with every installed plugin's commands added, as ``alertmux.cli.main`` builds it.

    A fresh group: ``alertmux.cli.cli`` itself keeps whatever a test registered on it earlier in the process.
    """
    from alertmux.cli import cli
    from alertmux.host import PluginHost

    core = {name: command for name, command in cli.commands.items()
            if command.callback is not None and inspect.unwrap(command.callback).__module__ == cli.callback.__module__}
    root = click.Group(name=cli.name, commands=core, params=cli.params, help=cli.help,
                       context_settings=cli.context_settings)
    PluginHost().hook.alertmux_register_commands(cli=root)
    return root


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(param: click.Parameter) -> str:
    if isinstance(param, click.Option) and param.is_flag and not param.secondary_opts:
        return ""
    default = param.default
    if type(default).__name__ == "Sentinel":  # click's "no default given" marker
        return ""
    if default is None or callable(default) or default == () or (isinstance(param, click.Option) and param.multiple
                                                                  and not default):
        return ""
    if isinstance(param, click.Option) and param.secondary_opts and isinstance(default, bool):
        return param.opts[0] if default else param.secondary_opts[0]
    return f"`{default}`"


def _type(param: click.Parameter) -> str:
    if isinstance(param.type, click.Choice):
        return " \\| ".join(f"`{c}`" for c in param.type.choices)
    if isinstance(param, click.Option) and param.is_flag:
        return "flag"
    if isinstance(param, click.Option) and param.count:
        return "count"
    name = param.type.name.lower()
    return {"text": "text", "integer": "integer", "float": "number", "path": "path"}.get(name, name)


def render_command(command: click.Command, path: list[str], out: list[str]) -> None:
    """Append the section of one command (and of its subcommands) to ``out``."""
    ctx = click.Context(command, info_name=" ".join(path))
    out.append(f"## `{' '.join(path)}`\n")
    callback = command.callback
    if callback is not None and len(path) > 1:
        out.append(f"Defined in `{inspect.unwrap(callback).__module__}`.\n")
    out.append("```text\n" + command.get_usage(ctx).replace("Usage: ", "") + "\n```\n")
    if command.help:
        out.append(inspect.cleandoc(command.help).replace("\b\n", "") + "\n")
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    if arguments:
        out.append("Arguments: " + ", ".join(f"`{p.human_readable_name}`" + (" (repeatable)" if p.nargs == -1 else "")
                                            for p in arguments) + ".\n")
    if options:
        out.append("| option | value | default | meaning |")
        out.append("|---|---|---|---|")
        for p in options:
            names = ", ".join(f"`{o}`" for o in (*p.opts, *p.secondary_opts))
            if p.multiple:
                names += " (repeatable)"
            out.append(f"| {names} | {_type(p)} | {_default(p)} | {_cell(p.help or '')} |")
        out.append("| `-h`, `--help` | flag |  | Show the help and exit. |\n")
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            render_command(command.commands[name], [*path, name], out)


def render() -> str:
    """The whole reference."""
    out = [HEADER]
    root = root_command()
    out.append("Commands: " + ", ".join(f"[`{n}`](#alertmux-{n.replace(' ', '-')})" for n in sorted(root.commands))
               + ".\n")
    render_command(root, ["alertmux"], out)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    """Rewrite docs/cli.md, or with ``--check`` only say whether it is current."""
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run python docs/scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""How long each command's help is at 80 and 120 columns, and what is cut off at 80.

    python benchmarks/help_lines.py          # a markdown table: one row per command

Every command and sub-command of the app is found by walking its Click group, so a new command
shows up here by itself. The help is rendered in this process, as `lipsync CMD --help` prints it
with COLUMNS set (Rich reads it when the help's console is made)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import click  # noqa: E402
import typer  # noqa: E402

from lipsync_cli.cli import app  # noqa: E402


def command_paths(group: click.Command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in getattr(group, "commands", {}).items():
        paths.extend(command_paths(sub, prefix + (name,)))
    return paths


def render(path: tuple[str, ...], columns: int) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            try:
                typer.main.get_command(app).main([*path, "--help"], prog_name="lipsync", standalone_mode=False)
            except SystemExit:
                pass
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    return buf.getvalue()


def main() -> None:
    print("| command | lines at 80 | lines at 120 | cut off (…) at 80 |")
    print("| --- | ---: | ---: | ---: |")
    for path in command_paths(typer.main.get_command(app)):
        at80, at120 = render(path, 80), render(path, 120)
        print(f"| `lipsync {' '.join(path + ('--help',))}` | {len(at80.splitlines())} | "
              f"{len(at120.splitlines())} | {at80.count('…')} |")


if __name__ == "__main__":
    main()

"""How the help reads: Typer's help, laid out for an 80-column terminal.

Typer gives each option a row of six columns two spaces apart (--long, -s, --no-long, -no-s, its
value, its description) and the description what the other five leave: at 80 columns that was 20
characters for `dub` (`--enhance-weights`, `--smooth/--no-smooth` and `<int,int,int,int>...` side
by side), and Typer has no setting for it. So, here and nowhere else (tests/test_cli_help.py
renders every command's help at 80 columns, which also guards against a Typer that fills its
table differently):

- `App` makes every command a `Command` (a group a `Group`), whose help lists an option's names
  and value in one column, as Click does ("-o, --output PATH", "--smooth / --no-smooth",
  "--pads TOP BOTTOM LEFT RIGHT"), at most NAMES_WIDTH wide, and gives the description the rest;
- a flag (`--help` too) shows no value where Typer showed `<bool>`; an argument is named in
  capitals as the help text names it (VIDEO);
- `help_panels` lists a command's options in panels a reader scans (Faces, Encoding...);
- a docstring's paragraphs are joined into lines (Typer joins the first paragraph's only).

Each option names its value with `metavar=` where it is declared ("Y1 Y2 X1 X2", "NAME|PATH").
"""

from __future__ import annotations

import copy
import inspect
from typing import Annotated, Callable, get_args, get_origin

import typer
from rich.table import Table
from rich.text import Text
from typer import rich_utils
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import ParameterInfo

NAMES_WIDTH = 30  # the most an option's names and value take; longer ones wrap (at a space)


class OptionTable(Table):
    """The table of one panel of options, as Typer fills it (a row of cells per option: the
    required mark where any is required, --long, -s, --no-long, -no-s, the value, the
    description), laid out in two columns: the names and value, and the description."""

    def add_row(self, *cells, **kwargs):
        if len(cells) < 6:  # not a row of options (Typer's table of commands)
            return super().add_row(*cells, **kwargs)
        *required, long, short, negative, negative_short, value, description = cells
        names = Text(", ").join([name for name in (short, long) if name.plain])
        for name in (negative, negative_short):
            if name.plain:
                names.append(" / ")
                names.append_text(name)
        if value.plain:
            names.append(" ")
            names.append_text(value)
        if not self.columns:
            if required:
                self.add_column(no_wrap=True)
            self.add_column(max_width=NAMES_WIDTH)
            self.add_column(ratio=1)  # the description: what the names leave
        return super().add_row(*required, names, description, **kwargs)


class _HelpLayout:
    """What Command and Group add to Typer's: see the module's docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.help:
            self.help = "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(self.help).split("\n\n"))

    def get_params(self, ctx):
        # all of them: Typer adds the group's --install-completion after making the group
        params = super().get_params(ctx)
        for param in params:
            _name_values(param)
        return params

    def get_help_option(self, ctx):
        """`--help`, in the panel of the first option (with the input and output), not alone in
        a panel of its own."""
        option = super().get_help_option(ctx)
        if option is not None:
            first = next((p for p in self.params if isinstance(p, TyperOption)), None)
            option.rich_help_panel = first.rich_help_panel if first is not None else None
        return option

    def format_help(self, ctx, formatter):
        # Typer builds its tables with rich_utils.Table: OptionTable takes its place while this
        # help is written, and only then.
        typer_table, rich_utils.Table = rich_utils.Table, OptionTable
        try:
            return super().format_help(ctx, formatter)
        finally:
            rich_utils.Table = typer_table


def _name_values(param) -> None:
    if param.metavar is not None:
        return
    if isinstance(param, TyperOption) and param.is_flag:
        param.metavar = ""
    elif isinstance(param, TyperArgument):
        param.metavar = param.name.upper()


class Command(_HelpLayout, TyperCommand):
    pass


class Group(_HelpLayout, TyperGroup):
    pass


class App(typer.Typer):
    """typer.Typer whose commands and groups lay their help out as this module says."""

    def __init__(self, **kwargs):
        super().__init__(cls=Group, **kwargs)

    def command(self, *args, **kwargs):
        return super().command(*args, cls=kwargs.pop("cls", Command), **kwargs)


def help_panels(panels: dict[str, tuple[str, ...]]) -> Callable:
    """A decorator that lists a command's options in panels of its help: {title: parameter
    names}, panels and rows in this order. Options shared by several commands take each
    command's panel this way; those named in no panel are listed first, under "Options".
    Rewrites the signature that Typer reads (so it goes above with_flags)."""

    def add(command):
        signature = inspect.signature(command, eval_str=True)
        params = signature.parameters
        listed = [name for names in panels.values() for name in names]
        unknown = [name for name in listed if name not in params]
        if unknown or len(set(listed)) != len(listed):
            raise TypeError(f"{command.__name__}: panels list unknown or repeated parameters: {unknown or listed}")
        rest = [p for name, p in params.items() if name not in listed]
        command.__signature__ = signature.replace(parameters=rest + [
            _in_panel(params[name], title) for title, names in panels.items() for name in names])
        return command

    return add


def _in_panel(p: inspect.Parameter, title: str) -> inspect.Parameter:
    """The parameter with a copy of its Typer info (its default, or in its Annotated type) that
    lists it in panel `title`."""
    if isinstance(p.default, ParameterInfo):
        return p.replace(default=_copy_with(p.default, rich_help_panel=title))
    if get_origin(p.annotation) is Annotated:
        base, *extras = get_args(p.annotation)
        extras = [_copy_with(e, rich_help_panel=title) if isinstance(e, ParameterInfo) else e for e in extras]
        return p.replace(annotation=Annotated[(base, *extras)])
    raise TypeError(f"{p.name}: not a Typer option or argument")


def _copy_with(info: ParameterInfo, **changes) -> ParameterInfo:
    info = copy.copy(info)
    for name, value in changes.items():
        setattr(info, name, value)
    return info

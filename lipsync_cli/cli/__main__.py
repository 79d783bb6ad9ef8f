"""`python -m lipsync_cli.cli`: the same as the `lipsync` command (and how torchrun starts it)."""

from . import entry_point

entry_point()

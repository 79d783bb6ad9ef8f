"""Exceptions that the CLI turns into one line on stderr and an exit code."""


class LipsyncError(Exception):
    """A failure the user can act on; the message is one line."""

    exit_code = 1


class InputError(LipsyncError):
    """Bad input from the user (missing file, not a video, wrong checkpoint...): exit code 2."""

    exit_code = 2


class CheckpointError(InputError):
    """A checkpoint that cannot be loaded or is for another model."""

"""Errors that carry a message meant for the user, naming what to fix."""


class MixstudyError(Exception):
    """Base class: the CLI prints these as one clear line and exits non-zero."""


class ConfigError(MixstudyError):
    """A parameter is missing, of the wrong type, or out of range."""


class DataError(MixstudyError):
    """A data file is missing, truncated, altered or of the wrong shape."""


class DivergedError(MixstudyError):
    """The training loss became non-finite."""


class Interrupted(MixstudyError):
    """Training stopped by Ctrl-C: the message says where, and what its resume point holds."""

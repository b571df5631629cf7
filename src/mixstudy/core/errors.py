"""Errors that carry a message meant for the user, naming what to fix."""


class MixstudyError(Exception):
    """Base class: the CLI prints these as one clear line and exits non-zero."""


class ConfigError(MixstudyError):
    """A parameter is missing, of the wrong type, or out of range."""


class DataError(MixstudyError):
    """A data file is missing, truncated, altered or of the wrong shape."""


class DivergedError(MixstudyError):
    """The training loss became non-finite."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, saying where it stopped and what its resume point holds (still a
    KeyboardInterrupt to any code that handles one; the CLI prints it as one line)."""

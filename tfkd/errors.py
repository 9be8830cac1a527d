"""Errors that tfkd reports to users as one line (entry points print them and exit non-zero)."""


class TfkdError(Exception):
    """Base class for errors caused by the user's input (data, flags, work directories)."""


class DataError(TfkdError, ValueError):
    """Malformed or inconsistent input data; the message names the file (and line) at fault."""


class ConfigError(TfkdError, ValueError):
    """Impossible or inconsistent settings (flags, work directories, checkpoints)."""

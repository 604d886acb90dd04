"""The exceptions stream-dec raises for expected failures.

Every expected failure (a bad file, a bad config key, a tampered checkpoint) raises a
subclass of :class:`StreamDecError` whose message names the file, key or record and
what was expected. The CLI prints that message on one line and exits non-zero; anything
else is a bug and keeps its traceback.
"""


class StreamDecError(Exception):
    """Base class of every expected stream-dec failure."""


class ConfigError(StreamDecError):
    """A configuration file or value is invalid (names the file and key)."""


class DataError(StreamDecError):
    """An embedding file cannot be used (names the file, row and problem)."""


class CheckpointError(StreamDecError):
    """A model checkpoint is missing, tampered with or inconsistent."""

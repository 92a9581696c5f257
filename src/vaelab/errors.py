"""The project's error types.

Every error a user can cause (a bad path, a corrupt file, an invalid config value) is raised
as a :class:`VaelabError` subclass whose message says what is wrong and how to fix it.  The CLI
prints such messages as one line and exits with status 2; anything else is a bug in vaelab.
"""


class VaelabError(Exception):
    """Base class of all errors caused by input, files or configuration."""


class ConfigError(VaelabError, ValueError):
    """An invalid configuration: unknown keys, wrong types or out-of-range values."""


class DataError(VaelabError):
    """A dataset cannot be found, downloaded, verified or parsed."""


class CheckpointError(VaelabError):
    """A checkpoint or run directory is missing, corrupt or from an incompatible run."""


class TrainingError(VaelabError):
    """Training cannot go on (for example a non-finite loss)."""


class TrainingInterrupted(TrainingError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint; ``--resume`` continues it."""

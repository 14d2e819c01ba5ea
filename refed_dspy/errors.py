"""Exceptions a user can cause. The CLI prints their message as one line and exits 2."""

import errno

FULL = (errno.ENOSPC, errno.EDQUOT)  # a full disk, or a used-up quota


class RefedError(Exception):
    """Base class for errors caused by input the user controls (config, seeds, keys, run dir)."""

    exit_code = 2

    def __init__(self, message: str = "", *, cli: str | None = None):
        super().__init__(message)
        self.cli = cli

    def cli_message(self) -> str:
        """The message in the command line's terms (flags instead of Python arguments), where they differ.

        Returns:
            The `cli` message given, else the exception's own message.
        """
        return self.cli or str(self)


class ConfigError(RefedError):
    """The config file or an override is invalid."""


class EndpointError(ConfigError):
    """The endpoint refused a run's first calls: no such URL, the key refused, or a reply in another format than the
    model's client reads. The message names the URL, the format expected and the likely fix."""


class SeedError(RefedError):
    """The seed source cannot be read or has no usable rows."""


class MissingKeyError(RefedError):
    """An API key environment variable named in the config is not set."""


class KeyProviderError(RefedError):
    """The config names another provider's key variable for a model whose calls go to its own provider's endpoint:
    the key would be handed to a party it does not belong to."""


class RunDirError(RefedError):
    """The run directory cannot be used (other config, unwritable, corrupt)."""


def write_error(where: str, err: OSError) -> RunDirError:
    """The one line a write that failed in `where` (a directory, in words: "run directory runs/a") is said in; a full
    disk or quota says what to do about it."""
    if err.errno in FULL:
        return RunDirError(
            f"cannot write to {where}: {err.strerror} (its disk or quota is full); free some space there, or choose "
            "a directory on another disk"
        )
    return RunDirError(f"cannot write to {where}: {err.strerror or err}")


class LedgerError(RunDirError):
    """A write-ahead ledger (what a directory's owner paid, or may have paid, for LM calls) cannot be believed: a line
    refed does not write (a negative cost, a count no run makes, a shape it does not know), a file that cannot be read,
    or a ledger gone from a directory that had one. The command stops before any call; the message names the file and
    the line."""


class FinishedShort(RefedError):
    """A command finished without the result it was asked for (the LM's outputs were unusable, a budget ran out)."""

    exit_code = 1


class RunAborted(RefedError):
    """The run stopped before finishing (too many consecutive failures, auth error, disk error).

    Everything written so far is kept; running the same command again resumes.
    """

    exit_code = 3


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) once its calls in flight finished or were cut off and its
    summary was written: `summary` is what the command returns when it finishes, for the caller to show. A
    KeyboardInterrupt to every `except`: code that knows nothing of it stops as before."""

    def __init__(self, summary: object):
        super().__init__()
        self.summary = summary

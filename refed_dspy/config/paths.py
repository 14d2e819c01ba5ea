"""A path as the user typed it: a leading `~` is their home directory, whatever passed the path on.

A shell expands `~` only where it is unquoted and starts a word: `--set run.dir='~/runs/x'`, a TOML file's
`dir = "~/runs/x"` and `refed view '~/runs/x'` all reach refed with the `~` still in them. Every path field of the
config (refed_dspy.config.section.UserPath) and every path argument of the CLI goes through `expand_home`, so that none
of them becomes a folder named `~` in the current directory (which a later `rm -rf ~` would take for the home).
"""

from __future__ import annotations

import os

__all__ = ["expand_home"]


def expand_home(path: str) -> str:
    """`path` with a leading `~` (or `~user`) made that home directory, as a shell does; any other path, a hub name
    or a URI, as given."""
    return os.path.expanduser(path) if path.startswith("~") else path

"""The one exception type for mistakes a user can fix (bad input, wrong model, corrupt memory).

The CLI turns it into a single line on stderr and exit code 2; anything else is a bug and exits 1.
"""


class UserError(ValueError):
    """A problem with what the user gave us; the message names the thing and the fix."""


class Interrupted(Exception):
    """Work stopped on request (Ctrl-C) after committing what was done; the CLI exits 130."""

"""Errors a user can act on. The CLI prints them as one line, never as a traceback."""


class UserError(Exception):
    """Bad input, a missing file, an impossible request: something the user can fix."""

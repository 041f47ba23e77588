"""The one exception type users see: its message is printed as a one-line error by the CLI."""


class BigLittleError(Exception):
    """A problem the user can fix (bad input, missing model, incompatible pair)."""

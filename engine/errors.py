"""The base of the engine's bad-input errors: what the user asked for cannot be done, and the message says why."""


class BadInputError(ValueError):
    """Bad input, not a bug: the message names the path or option and the fix, and is shown without a traceback
    (the CLI prints it in one line and exits 2)."""

"""The errors a user can act on; the CLI prints them as one line and exits with status 2."""


class DataError(ValueError):
    """Bad or missing input data; the message names the file or flag and what to do."""


class RunError(ValueError):
    """A run that cannot start or go on as asked; the message says what to do instead."""

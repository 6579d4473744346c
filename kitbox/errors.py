"""The errors a competitor's input causes: printed as one ``error:`` line with the fix, never a traceback."""


class InputError(ValueError):
    """A problem with the run's inputs (files, columns, values, options); the message names it and the fix."""

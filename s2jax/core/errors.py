"""The one exception type for bad user input; the CLI prints it as one line and exits 2."""


class S2JaxError(Exception):
    """Bad input (file, field, config value): the message names it and what was expected."""

"""The one exception of bad input."""


class ConfigError(ValueError):
    """Bad input: the message is the one line shown to the user."""

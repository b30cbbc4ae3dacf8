"""The one exception type that entry points turn into a one-line message and a non-zero exit."""


class ConfigError(ValueError):
    """A problem with the user's configuration or data that they can fix.

    Raised with a message that says what was wrong and what to do; entry points print it as one
    line instead of a stack trace, because the trace would point into library code, not at the fix.
    """

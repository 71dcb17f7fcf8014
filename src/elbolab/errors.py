"""The one exception type the command line turns into a one-line message."""


class ElbolabError(Exception):
    """A user-facing error: bad input, missing data, an unusable run folder."""


class DataError(ElbolabError):
    """A data set could not be found, downloaded, verified or read."""


class ConfigError(ElbolabError):
    """A configuration key or value is unknown or malformed."""


def one_line_warnings() -> None:
    """Warnings printed as one line, `warning: MESSAGE` (the command line's form, and its worker processes')."""
    import warnings

    warnings.formatwarning = lambda message, category, *_args, **_kw: f"warning: {message}\n"

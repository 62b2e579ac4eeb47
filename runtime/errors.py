"""The project's few exception types. The CLI turns each into a one-line message."""


class FundusEdgeError(Exception):
    """Base of every error the CLI reports as one line (no traceback)."""


class InputError(FundusEdgeError):
    """Bad user input: a missing, unreadable or inconsistent file or folder."""


class ModelError(FundusEdgeError):
    """A model directory or checkpoint that cannot be used."""


class IntegrityError(ModelError):
    """A file whose sha256 does not match the manifest, or a refused file type."""


class EngineUnavailable(FundusEdgeError):
    """An inference engine that is not installed or cannot run on the asked device."""


class EngineRunError(FundusEdgeError):
    """An engine that loaded a model but failed to run it."""


def one_line(exc: BaseException) -> str:
    """``ClassName: first line of the message`` (at most 300 characters): how an engine's own
    exception is reported in an error or a benchmark row."""
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0][:300] if text else ''}"


def nearest(given: str, choices, how_to_list: str = "", n: int = 3) -> str:
    """The tail of an "unknown choice" error: at most ``n`` choices nearest to ``given`` (difflib's ratio, the
    standard library's fuzzy match) and how to list them all, never the whole list (a bench record has 70
    rows). Used wherever a user names a row, an engine, a precision or a section."""
    import difflib

    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(given), choices, n=n, cutoff=0.0)[:n]
    tail = f"; nearest: {', '.join(close)}" if close else ""
    return tail + (f"; list them all with {how_to_list}" if how_to_list else "")

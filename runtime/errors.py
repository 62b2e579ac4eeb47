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

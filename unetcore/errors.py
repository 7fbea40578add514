"""The errors unetcore raises on bad input.

Every error a user can cause is an ``UnetcoreError``: the command line prints its
message (which names the file, layer or blob and says what to do) instead of a
traceback.
"""


class UnetcoreError(Exception):
    """Base class of every error caused by the user's input."""


class PrototxtError(UnetcoreError):
    """A syntax or schema error in a prototxt file, located as file:line:col."""

    def __init__(self, message, filename="<string>", line=0, col=0):
        self.filename, self.line, self.col = filename, line, col
        self.bare_message = message
        super().__init__(f"{filename}:{line}:{col}: {message}")


class NetError(UnetcoreError):
    """A network that cannot be built: unknown blob, bad shape, bad parameter."""


class DataError(UnetcoreError):
    """A missing, corrupt or inconsistent data file."""


class SolverError(UnetcoreError):
    """A training run that cannot go on (bad solver settings, NaN loss)."""


class WriteError(UnetcoreError):
    """A file the operating system refuses to write (a full disk, a read-only folder)."""

    def __init__(self, path, reason):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: cannot write it: {reason}")


class BackendError(UnetcoreError):
    """A GPU asked for where none is usable."""


def closest_name(name, known, cutoff=0.6):
    """The name in `known` that `name` most resembles, case aside, or None: for the "did
    you mean" of a message ('Relu' -> 'ReLU', 'cc-by-4' -> 'CC-BY-4.0')."""
    import difflib
    by_lower = {candidate.lower(): candidate for candidate in known}
    close = difflib.get_close_matches(name.lower(), by_lower, n=1, cutoff=cutoff)
    return by_lower[close[0]] if close else None

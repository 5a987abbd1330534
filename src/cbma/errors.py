"""Errors that reach the user as one line naming the file, line or field."""


class CbmaError(Exception):
    """A problem with the user's input or configuration.

    The message is complete on its own (it names the file and line, or the
    config field, and what was expected), so the pipeline prints it as a
    single line instead of a traceback.
    """


class InputFileError(CbmaError):
    """A malformed input file.

    Parameters
    ----------
    path : str or os.PathLike
        The offending file.
    line : int or None
        1-based line number, when the problem is on one line.
    reason : str
        What was found and what was expected.
    """

    def __init__(self, path, line, reason):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")

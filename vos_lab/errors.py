"""One exception type for every problem caused by the user's input (paths, files, parameters).

The CLI prints such an error as a single line and exits with status 2; anything else is a bug and keeps
its traceback.
"""


class VosLabError(Exception):
    """A problem with the input that the user can fix; the message says what and where."""

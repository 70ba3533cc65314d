"""The one base class of errors in what a user gave moalign.

Bad data, configs, preference vectors, paths, checkpoints, or a run that diverged (NaN) are
:class:`MoalignError`\\ s: the command line prints their message on one line and exits with status 2.
Any other exception is a bug in moalign and keeps its traceback (``moalign --debug`` shows tracebacks
for everything). Each subclass also derives from the built-in exception it refines (``ValueError``, ...),
so code that catches those keeps working.
"""


class MoalignError(Exception):
    """Something wrong with the user's input or run, with a message that says what and where."""

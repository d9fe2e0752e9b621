"""The one exception type users see: a message that says what is wrong and what to change.

The CLI prints it without a traceback; everything else is a bug and keeps its traceback.
"""


class TuneforgeError(Exception):
    """A problem with the user's input (config, data, model choice) that they can fix."""

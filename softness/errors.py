"""The one exception type the command line turns into a one-sentence message."""


class SoftnessError(Exception):
    """A problem with the user's input or a run that cannot continue.

    The message is a single sentence naming the problem (the file, the config key,
    the step and the quantity); ``softness`` prints it and exits non-zero.
    """

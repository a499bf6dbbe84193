"""A step of the plan: a name, what it does, its parameters (for --explain),
the launcher ops that carry it out, and fixes for the errors it can hit."""


class Step:
    __slots__ = ("name", "summary", "params", "ops", "hints")

    def __init__(self, name, summary, params=None, ops=(), hints=None):
        self.name = name            # stable identifier, shown in errors and --explain
        self.summary = summary      # one line: what and why
        self.params = params or {}  # shown by --explain
        self.ops = list(ops)        # the launcher's ops, from launch.py's constructors
        self.hints = hints or {}    # errno name -> how to fix


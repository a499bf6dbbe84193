"""Errors a user can cause, and the exit codes the CLI documents.

Every error carries three parts, because a user needs all three to act:
what went wrong, where (file and key, option, or plan step) and how to fix it.
"""

EXIT_SANDBOX = 125      # the sandbox could not do what was asked: bad profile, bad option, setup failure
EXIT_CANNOT_EXEC = 126  # the program exists but cannot be executed
EXIT_NOT_FOUND = 127    # the program or script does not exist


def did_you_mean(word, choices, otherwise="", quote=True):
    """The fix for a misspelt name: "did you mean 'X'?" for the closest of
    `choices`, else `otherwise`.  (difflib is imported only on this error path.)"""
    import difflib
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    if not close:
        return otherwise
    return f"did you mean '{close[0]}'?" if quote else f"did you mean {close[0]}?"


class SandboxError(Exception):
    exit_code = EXIT_SANDBOX

    def __init__(self, what, where=None, fix=None, exit_code=None):
        super().__init__(what)
        self.what = what
        self.where = where
        self.fix = fix
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self):
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class ProfileError(SandboxError):
    """A profile (YAML) is wrong; nothing ran."""


class UsageError(SandboxError):
    """A command-line option is wrong; nothing ran."""


class SetupError(SandboxError):
    """A step of the plan failed before the program started; nothing ran unconfined."""


def shorten(value, limit=80):
    """repr(value) cut to `limit` characters, ending in '…' when cut: a value quoted in a
    message must never be unbounded.  Values come from files and options and can be huge --
    through YAML aliases, gigabytes -- so a message never formats one whole: a string is cut
    before repr, and reprlib bounds the work on containers, not just the output (it is
    imported only on this error path)."""
    if isinstance(value, (str, bytes)):
        text = repr(value[:limit])
    else:
        import reprlib
        r = reprlib.Repr()
        r.maxstring = r.maxother = r.maxlong = limit
        r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 2, 4, 4, 4, 4
        try:
            text = r.repr(value)
        except ValueError:                      # an int beyond Python's 4300-digit str() limit
            text = f"<an integer of {value.bit_length()} bits>"
    return text if len(text) <= limit else text[:max(limit - 1, 0)] + "…"

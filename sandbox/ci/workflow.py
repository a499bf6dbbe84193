"""GitHub Actions workflow commands, and keeping untrusted output from issuing any.

The runner reads `::command::` lines from a step's output.  Untrusted output is printed
(1) only after the program is gone, (2) between `::stop-commands::TOKEN` and `::TOKEN::`
with a TOKEN made after the program ended (it cannot have seen or guessed it), and (3)
with every line indented, so a line of it can start neither a command nor a line a
person or a regex would read as ours ("Points 10/10").
"""
import os
import secrets

INDENT = "    | "


def untrusted_block(title, text, write):
    """Print `text` (the program's output) so that it can issue no workflow command."""
    token = secrets.token_hex(16)
    write(f"::stop-commands::{token}\n")
    write(f"{title}\n")
    for line in text.splitlines() or [""]:
        write(f"{INDENT}{line}\n")
    write(f"::{token}::\n")


def escape_data(text):
    """A workflow command's message (after `::`): %, CR and LF escaped as the runner expects."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text):
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name, message, **props):
    """`::name k=v,...::message`, every part escaped."""
    args = ",".join(f"{k}={escape_property(str(v))}" for k, v in props.items() if v is not None)
    return f"::{name}{' ' + args if args else ''}::{escape_data(message)}\n"


def set_outputs(values):
    """Append step outputs to $GITHUB_OUTPUT (multi-line values with a random delimiter)."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return False
    lines = []
    for name, value in values.items():
        value = str(value)
        if "\n" in value:
            delim = f"EOF_{secrets.token_hex(8)}"
            lines.append(f"{name}<<{delim}\n{value}\n{delim}\n")
        else:
            lines.append(f"{name}={value}\n")
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
    except OSError as e:
        from sandbox.errors import UsageError
        raise UsageError(f"cannot append the step's outputs to {path}: {e.strerror}", "$GITHUB_OUTPUT",
                         "run inside a GitHub Actions step, or unset GITHUB_OUTPUT") from None
    return True

"""Sizes and durations as users write them: 65536, 64K, 64MiB, 1G; 1.5, 1.5s, 500ms, 2m.

Sizes are binary: K, KB and KiB all mean 1024 bytes (judges write "256M" and mean MiB).
"""

from .errors import shorten

_SIZE = {"": 1, "b": 1}
for _i, _p in enumerate("kmgt", start=1):
    for _suffix in (_p, _p + "b", _p + "ib"):
        _SIZE[_suffix] = 1024 ** _i

_TIME = {"": 1.0, "s": 1.0, "ms": 0.001, "us": 0.000001, "m": 60.0, "min": 60.0, "h": 3600.0}

UNLIMITED = ("unlimited", "none", "inf", "infinity")

# The largest values accepted, so that whatever passes here also passes the launcher and the kernel:
# - sizes travel through the plan as signed 64-bit numbers (the launcher's strtoll, setrlimit) and the
#   address-space backstop adds 1 GiB to the memory limit, so 2^62 bytes leaves room;
# - a wall time becomes a poll() timeout in milliseconds, a signed 32-bit int (about 596 h).
MAX_SIZE = 1 << 62                      # 4194304T
MAX_DURATION = 500 * 3600.0             # 500h
MAX_TEXT = 64                           # longer strings are no size or duration anyone means
DIGITS = "0123456789"


def _parse(value, table):
    """'<number><unit>' -> number * table[unit] (an int when the number is whole and the
    unit an int); None for 'unlimited'; raises ValueError.  Only ASCII digits count:
    str.isdigit() and float() accept '\u00b2' and fullwidth digits, which nobody means."""
    text = value.strip().lower()
    if text in UNLIMITED:
        return None
    if len(text) > MAX_TEXT or not text.isascii():
        raise ValueError
    i = 0
    while i < len(text) and (text[i] in DIGITS or text[i] == "."):
        i += 1
    number, unit = text[:i], text[i:].strip()
    if unit not in table or number.count(".") > 1 or not number.strip("."):
        raise ValueError
    if "." not in number and isinstance(table[unit], int):
        return int(number) * table[unit]
    return float(number) * table[unit]


def _too_big(value, what, largest):
    return ValueError(f"{shorten(value, 40)} is more than the largest {what} accepted, {largest}")


def parse_size(value):
    """Bytes as an int, or None for unlimited.  Raises ValueError with the accepted forms."""
    if value is None:
        return None
    n = None
    if isinstance(value, bool):
        pass                                   # true is not 1 byte
    elif isinstance(value, int) and value >= 0:
        n = value
    elif isinstance(value, float) and value.is_integer() and value >= 0:   # inf and nan are not integers
        n = int(value)
    elif isinstance(value, str):
        try:
            n = _parse(value, _SIZE)
        except ValueError:
            pass
        else:
            if n is None:
                return None
            if n != n or n == float("inf"):
                n = MAX_SIZE + 1
            n = int(n)
    if n is None:
        raise ValueError(f"{shorten(value, 60)} is not a size (write 65536, 64K, 64M, 64MiB, 1G or unlimited)")
    if n > MAX_SIZE:
        raise _too_big(value, "size", f"{MAX_SIZE >> 40}T (2^62 bytes)")
    return n


def parse_duration(value):
    """Seconds as a float, or None for unlimited.  Raises ValueError with the accepted forms."""
    if value is None:
        return None
    s = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, (int, float)) and value >= 0:     # nan fails >= 0
        s = float(value) if not isinstance(value, int) or value <= MAX_DURATION else MAX_DURATION + 1
    elif isinstance(value, str):
        try:
            s = _parse(value, _TIME)
        except ValueError:
            pass
        else:
            if s is None:
                return None
    if s is None:
        raise ValueError(f"{shorten(value, 60)} is not a duration (write 1.5, 1.5s, 500ms, 2m or unlimited)")
    if not s <= MAX_DURATION:                                 # inf too
        raise _too_big(value, "duration", f"{MAX_DURATION / 3600:g}h")
    return s


def format_size(n):
    if n is None:
        return "unlimited"
    for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def human_size(n):
    """A measured size for people: 71.3 MiB."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} bytes"


def format_duration(s):
    if s is None:
        return "unlimited"
    return f"{s:g}s"

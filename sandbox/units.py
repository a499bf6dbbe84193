"""Sizes and durations as users write them: 65536, 64K, 64MiB, 1G; 1.5, 1.5s, 500ms, 2m.

Sizes are binary: K, KB and KiB all mean 1024 bytes (judges write "256M" and mean MiB).
"""

_SIZE = {"": 1, "b": 1}
for _i, _p in enumerate("kmgt", start=1):
    for _suffix in (_p, _p + "b", _p + "ib"):
        _SIZE[_suffix] = 1024 ** _i

_TIME = {"": 1.0, "s": 1.0, "ms": 0.001, "us": 0.000001, "m": 60.0, "min": 60.0, "h": 3600.0}

UNLIMITED = ("unlimited", "none", "inf", "infinity")


def _parse(value, table):
    """'<number><unit>' -> number * table[unit]; None for 'unlimited'; raises ValueError."""
    text = value.strip().lower()
    if text in UNLIMITED:
        return None
    i = len(text)
    while i and not (text[i - 1].isdigit() or text[i - 1] == "."):
        i -= 1
    number, unit = text[:i], text[i:].strip()
    if number and unit in table:
        n = float(number)        # ValueError for "1.2.3"
        if n >= 0:
            return n * table[unit]
    raise ValueError


def parse_size(value):
    """Bytes as an int, or None for unlimited.  Raises ValueError with the accepted forms."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    try:
        if isinstance(value, str):
            n = _parse(value, _SIZE)
            return None if n is None else int(n)
    except ValueError:
        pass
    raise ValueError(f"{value!r} is not a size (write 65536, 64K, 64M, 64MiB, 1G or unlimited)")


def parse_duration(value):
    """Seconds as a float, or None for unlimited.  Raises ValueError with the accepted forms."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    try:
        if isinstance(value, str):
            return _parse(value, _TIME)
    except ValueError:
        pass
    raise ValueError(f"{value!r} is not a duration (write 1.5, 1.5s, 500ms, 2m or unlimited)")


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

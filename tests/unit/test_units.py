"""Sizes and durations as profiles and options write them (units.py)."""
import pytest

from sandbox.units import parse_duration, parse_size


@pytest.mark.parametrize("text,value", [("65536", 65536), ("64K", 65536), ("64KiB", 65536), ("64M", 64 << 20),
                                        ("64MiB", 64 << 20), ("1G", 1 << 30), ("1.5G", 3 << 29), (4096, 4096),
                                        ("unlimited", None), (" 8 M ", 8 << 20)])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text,value", [("1.5", 1.5), ("1.5s", 1.5), ("500ms", 0.5), ("2m", 120.0), (3, 3.0),
                                        ("250us", 0.00025), ("unlimited", None)])
def test_durations(text, value):
    assert parse_duration(text) == value


@pytest.mark.parametrize("bad", ["64Q", "-1", "", "M", "1.2.3M", True, [1]])
def test_bad_sizes(bad):
    with pytest.raises(ValueError, match="not a size|negative"):
        parse_size(bad)


@pytest.mark.parametrize("bad", ["soon", "-2s", "1x", "", False])
def test_bad_durations(bad):
    with pytest.raises(ValueError, match="not a duration|negative"):
        parse_duration(bad)

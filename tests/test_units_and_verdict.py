"""Pure logic: size/duration parsing and the verdict precedence XX > TLE > MLE > OLE > SYS > SG > RE > OK."""
import os

import pytest

from sandbox import report
from sandbox.supervise import Outcome
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


LIMITS = {"cpu_time": 1.0, "wall_time": 3.0, "memory": 100, "output": 10, "file_size": 10, "processes": 4}


def outcome(**kw):
    o = Outcome()
    o.t_spawn, o.t_exec, o.t_end = 0.0, 0.001, 0.5
    o.wstatus = 0
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def verdict(o, cpu=0.1, wall=0.5, peak=10):
    ran = o.setup_error is None
    code = sig = None
    if o.wstatus is not None:
        code = os.WEXITSTATUS(o.wstatus) if os.WIFEXITED(o.wstatus) else None
        sig = os.WTERMSIG(o.wstatus) if os.WIFSIGNALED(o.wstatus) else None
    return report._verdict(None, o, LIMITS, ran, cpu, wall, peak, code, sig)[:2]


def test_each_status_alone():
    assert verdict(outcome()) == ("OK", None)
    assert verdict(outcome(wstatus=3 << 8)) == ("RE", None)
    assert verdict(outcome(wstatus=11)) == ("SG", None)
    assert verdict(outcome(wstatus=31)) == ("SYS", None)
    assert verdict(outcome(killed="output", wstatus=9)) == ("OLE", "output")
    assert verdict(outcome(wstatus=25)) == ("OLE", "file_size")
    assert verdict(outcome(killed="memory", wstatus=9)) == ("MLE", "memory")
    assert verdict(outcome(), peak=101) == ("MLE", "memory")
    assert verdict(outcome(killed="cpu_time", wstatus=9), cpu=1.01) == ("TLE", "cpu_time")
    assert verdict(outcome(wstatus=24)) == ("TLE", "cpu_time")                 # SIGXCPU backstop
    assert verdict(outcome(), cpu=1.2) == ("TLE", "cpu_time")                  # finished, but over
    assert verdict(outcome(killed="wall_time", wstatus=9), wall=3.01) == ("TLE", "wall_time")
    assert verdict(outcome(wstatus=None, killed="setup_timeout"))[0] == "XX"
    assert verdict(outcome(wstatus=None))[0] == "XX"                           # init vanished
    o = outcome(wstatus=None)                                                  # ... with the cgroup's OOM group kill
    assert report._verdict(None, o, LIMITS, True, 0.1, 0.5, 100, None, 9, oom_kills=1)[:2] == ("MLE", "memory")


def test_precedence_when_several_apply():
    # RE + SG cannot coexist; check every higher one wins over everything below it
    assert verdict(outcome(killed="output", wstatus=31), peak=5) == ("OLE", "output")          # OLE > SYS
    assert verdict(outcome(killed="output", wstatus=9), peak=500) == ("MLE", "memory")         # MLE > OLE
    assert verdict(outcome(killed="memory", wstatus=9), cpu=2.0) == ("TLE", "cpu_time")        # TLE > MLE
    assert verdict(outcome(wstatus=31), cpu=0.1, peak=500) == ("MLE", "memory")               # MLE > SYS
    assert verdict(outcome(wstatus=11), cpu=5.0) == ("TLE", "cpu_time")                        # TLE > SG
    assert verdict(outcome(wstatus=1 << 8), peak=500) == ("MLE", "memory")                     # MLE > RE

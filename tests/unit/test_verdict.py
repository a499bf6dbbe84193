"""Verdicts from hand-made outcomes (report._verdict), by the documented precedence
XX > TLE > MLE > OLE > SYS > SG > RE > OK, and the interactive verdict."""
import os

import pytest

from sandbox import report
from sandbox.judge import interactive_verdict
from sandbox.report import Result
from sandbox.supervise import Outcome

LIMITS = {"cpu_time": 1.0, "wall_time": 3.0, "memory": 64 << 20, "output": 1 << 20, "file_size": 1 << 20,
          "processes": 8}


def outcome(**kw):
    o = Outcome()
    o.t_spawn, o.t_exec, o.t_end = 0.0, 0.001, 0.5
    o.wstatus = 0
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def verdict(o, cpu=0.1, wall=0.5, peak=1 << 20, exit_code=None, signal=None, oom_kills=0, pids_max_hits=0,
            limits=LIMITS):
    status, limit, message, code = report._verdict(None, o, limits, o.setup_error is None, cpu, wall, peak,
                                                   exit_code, signal, oom_kills, pids_max_hits)
    return status, limit, message


# Limits a few bytes wide, so that every pair of verdicts can be made to apply at once.
TINY = {"cpu_time": 1.0, "wall_time": 3.0, "memory": 100, "output": 10, "file_size": 10, "processes": 4}


def tiny(o, cpu=0.1, wall=0.5, peak=10):
    """(status, limit) against TINY, the exit code or signal read from the outcome's wait status."""
    code = sig = None
    if o.wstatus is not None:
        code = os.WEXITSTATUS(o.wstatus) if os.WIFEXITED(o.wstatus) else None
        sig = os.WTERMSIG(o.wstatus) if os.WIFSIGNALED(o.wstatus) else None
    return verdict(o, cpu, wall, peak, code, sig, limits=TINY)[:2]


@pytest.mark.parametrize("kw, o, expected", [
    ({}, {}, ("OK", None, "exited with status 0")),
    ({"exit_code": 3}, {"wstatus": 3 << 8}, ("RE", None, "exited with status 3")),
    ({"exit_code": 1}, {"wstatus": 1 << 8, "procs_peak": 8}, ("RE", None, "exited with status 1 (the processes "
                                                                          "limit 8 was reached)")),
    ({"signal": 11}, {"wstatus": 11}, ("SG", None, "killed by signal 11 (SIGSEGV)")),
    ({"signal": 9}, {"wstatus": None, "killed": "cancelled"}, ("SG", None, "stopped by the caller (cancelled)")),
    ({"signal": 31}, {"wstatus": 31}, ("SYS", None, "killed by a disallowed system call (SIGSYS)")),
    ({"signal": 25}, {"wstatus": 25}, ("OLE", "file_size", None)),
    ({"signal": 9}, {"wstatus": None, "killed": "output"}, ("OLE", "output", None)),
    ({"oom_kills": 1, "signal": 9}, {"wstatus": None}, ("MLE", "memory", None)),
    ({"peak": 65 << 20}, {}, ("MLE", "memory", None)),                        # measured at the end
    ({"wall": 3.5, "signal": 9}, {"wstatus": None, "killed": "wall_time"}, ("TLE", "wall_time", None)),
    ({"cpu": 1.2}, {}, ("TLE", "cpu_time", None)),                           # over the limit, though it exited 0
    ({"signal": 24}, {"wstatus": 24}, ("TLE", "cpu_time", None)),            # SIGXCPU: the rlimit's
])
def test_each_verdict(kw, o, expected):
    status, limit, message = verdict(outcome(**o), **kw)
    assert (status, limit) == expected[:2], message
    if expected[2] is not None:
        assert message == expected[2]


def test_precedence_when_several_apply():
    # over the CPU limit, over the memory limit, killed for output, by a signal: TLE first
    o = outcome(wstatus=None, killed="output")
    assert verdict(o, cpu=2.0, peak=100 << 20, signal=9)[0] == "TLE"
    assert verdict(o, peak=100 << 20, signal=9)[0] == "MLE"
    assert verdict(o, signal=9)[0] == "OLE"
    # a cancelled run that also went over its CPU limit is a TLE, not the caller's doing
    assert verdict(outcome(wstatus=None, killed="cancelled"), cpu=2.0, signal=9)[0] == "TLE"


def test_the_sandbox_failing_is_xx():
    assert verdict(outcome(wstatus=None, killed="setup_timeout", t_end=30.0))[0] == "XX"
    status, _, message = verdict(outcome(wstatus=None))
    assert status == "XX" and "init died" in message


def test_each_status_alone_against_tiny_limits():
    assert tiny(outcome()) == ("OK", None)
    assert tiny(outcome(wstatus=3 << 8)) == ("RE", None)
    assert tiny(outcome(wstatus=11)) == ("SG", None)
    assert tiny(outcome(wstatus=31)) == ("SYS", None)
    assert tiny(outcome(killed="output", wstatus=9)) == ("OLE", "output")
    assert tiny(outcome(wstatus=25)) == ("OLE", "file_size")
    assert tiny(outcome(killed="memory", wstatus=9)) == ("MLE", "memory")
    assert tiny(outcome(), peak=101) == ("MLE", "memory")
    assert tiny(outcome(killed="cpu_time", wstatus=9), cpu=1.01) == ("TLE", "cpu_time")
    assert tiny(outcome(wstatus=24)) == ("TLE", "cpu_time")                 # SIGXCPU backstop
    assert tiny(outcome(), cpu=1.2) == ("TLE", "cpu_time")                  # finished, but over
    assert tiny(outcome(killed="wall_time", wstatus=9), wall=3.01) == ("TLE", "wall_time")
    assert tiny(outcome(wstatus=None, killed="setup_timeout"))[0] == "XX"
    assert tiny(outcome(wstatus=None))[0] == "XX"                           # init vanished
    o = outcome(wstatus=None)                                                  # ... with the cgroup's OOM group kill
    assert report._verdict(None, o, TINY, True, 0.1, 0.5, 100, None, 9, oom_kills=1)[:2] == ("MLE", "memory")


def test_precedence_of_every_pair_against_tiny_limits():
    # RE + SG cannot coexist; check every higher one wins over everything below it
    assert tiny(outcome(killed="output", wstatus=31), peak=5) == ("OLE", "output")          # OLE > SYS
    assert tiny(outcome(killed="output", wstatus=9), peak=500) == ("MLE", "memory")         # MLE > OLE
    assert tiny(outcome(killed="memory", wstatus=9), cpu=2.0) == ("TLE", "cpu_time")        # TLE > MLE
    assert tiny(outcome(wstatus=31), cpu=0.1, peak=500) == ("MLE", "memory")               # MLE > SYS
    assert tiny(outcome(wstatus=11), cpu=5.0) == ("TLE", "cpu_time")                        # TLE > SG
    assert tiny(outcome(wstatus=1 << 8), peak=500) == ("MLE", "memory")                     # MLE > RE


def result(status, exit_code=None, cancelled=False, message=""):
    return Result(status=status, exit_code=exit_code, cancelled=cancelled, message=message)


@pytest.mark.parametrize("sol, it, expected", [
    (result("OK"), result("OK", 0), "AC"),
    (result("SG", cancelled=True), result("OK", 0), "AC"),      # stopped by the judge once the interactor was done
    (result("OK"), result("RE", 1), "WA"),
    (result("TLE"), result("OK", 0), "TLE"),
    (result("SG"), result("OK", 0), "RE"),                      # crashed on its own
    (result("SG", cancelled=True), result("RE", 1), "WA"),
    (result("RE", 1), result("RE", 2), "RE"),
    (result("OK"), result("XX"), "XX"),
    # the field decides, not the text: a program may print anything, a message may change
    (result("SG", message="stopped by the caller (cancelled)"), result("OK", 0), "RE"),
])
def test_interactive_verdict(sol, it, expected):
    assert interactive_verdict(sol, it) == expected

"""The plans `sandbox run` built before, kept so that the same run needs no new one.

Building a plan imports every module that contributes a step and asks the host a few
dozen questions; that costs a cold `sandbox run` more than bubblewrap's whole run
(bench/bench.py).  So the CLI keeps each plan it builds, with

- the key: what the run was asked (the options that reach runner.prepare), the working
  directory, the whole environment and the caller's ids and groups;
- the facts: every question the build asked the host, with its answer (hostfacts.py),
  among them the profile's files (its `extends` chain and seccomp policies) and the
  source files of the modules that built it, so that an edited profile, a changed
  bind source or an upgraded package is a new plan;

and uses a kept plan again only when the key is equal and every fact still holds: the
host is asked again on every run, only the work of deriving the plan is saved.  The facts
are checked while the launcher builds the sandbox: init waits at a gate before it forks the
program (launch.GATE_FD), and goes on only once they hold.  When one does not, that launch
is abandoned (nothing of the program existed; what init built is in namespaces of its own,
gone with it) and the CLI builds the plan again, as if none had been kept.  Plans
with host steps (a root caller's, a delegated cgroup's: hoststep.py) or an image root
are not kept; they are built each time, as the API builds them.

Entries live in $XDG_CACHE_HOME/sandbox/plans, one file per slot (SLOTS of them, so the
cache stays bounded whatever the command lines); a slot holds the last plan whose key
falls in it.  SANDBOX_NO_PLAN_CACHE=1 turns it off (it is part of the environment, so
part of the key too).
"""
import marshal
import os
import sys

from . import configfiles, hostfacts
from .profile import Profile
from .step import Delegation, Plan, Step

FORMAT = 1          # of an entry; a change of it is a miss
SLOTS = 64


def _key(request):
    return (FORMAT, sorted(request.items()), os.getcwd(), sorted(os.environ.items()),
            os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups()))


def _slot(key):
    # repr, not marshal: marshal's bytes for equal values differ with their reference counts.
    # The bytes as one number modulo a prime (a polynomial hash, base 256): no module to import.
    number = int.from_bytes(repr(key).encode(), "little") % 2305843009213693951     # 2**61 - 1
    return configfiles.cache_path("plans", f"{number % SLOTS:02d}.marshal")


def enabled():
    return not os.environ.get("SANDBOX_NO_PLAN_CACHE")


def lookup(request):
    """The kept plan for `request` (the keyword arguments of runner.prepare) and a function
    that says whether its facts still hold, or None.  The plan may be run only if that
    function says yes: the CLI asks it while the launcher builds the sandbox, before the
    program exists (runner.execute's `confirm`), so that the check costs no time of its own."""
    if not enabled():
        return None
    try:
        key = _key(request)             # (OSError: the working directory is gone)
        with open(_slot(key), "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return None                 # a plan someone else could have written is not ours to run
            entry = marshal.loads(f.read())    # (marshal.load(f) reads a file object piece by piece: 3x slower)
        if entry[0] != key:
            return None
        facts = entry[1]
        return _plan(entry[2]), lambda: _holds(facts)
    except (OSError, EOFError, ValueError, TypeError, IndexError):
        return None


def _holds(facts):
    try:
        return hostfacts.still_true(facts)
    except (LookupError, ValueError, TypeError):     # a damaged entry's facts (an unknown question...)
        return False


def record():
    """Start noting the host's answers: the build that follows may be kept (store)."""
    if enabled():
        hostfacts.start_recording()


def store(request, plan):
    """Keep `plan`, built for `request` since record(), if it is a plan that may be kept."""
    keep = enabled() and plan is not None and plan.rootfs is None and not plan.keep_workdir and not plan.cgroup \
        and all(type(s) is Step for s in plan.steps) and _ask_for_the_code()
    facts = hostfacts.stop_recording()
    if facts is None or not keep:
        return
    # What a run reads of a plan: not what only --explain shows (summaries, parameters),
    # nor the profile's data (the report names the profile; the steps hold the rest).
    p = plan.profile
    payload = ([(s.name, s.ops, s.hints) for s in plan.steps], (p.name, p.path, p.chain),
               plan.argv, plan.env, plan.cwd, plan.limits, plan.seccomp, plan.cgroup.reason)
    try:
        key = _key(request)
        data = marshal.dumps((key, facts, payload))
    except (OSError, ValueError):   # no working directory any more; something not plain data
        return
    configfiles.write_cache(_slot(key), data, 0o600)    # lookup() trusts no other mode


def _ask_for_the_code():
    """The code that built the plan is a fact too (a changed module may build a different
    plan): each sandbox module's stamp, asked while recording.  False if one cannot be read."""
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name.startswith("sandbox.") and path:
            try:
                hostfacts.stat(path)
            except OSError:
                return False
    return True


def _plan(payload):
    steps, profile, argv, env, cwd, limits, seccomp, reason = payload
    return Plan(Profile(*profile, {}, {}), [Step(name, "", None, ops, hints) for name, ops, hints in steps],
                argv, env, cwd, limits, seccomp, Delegation(reason=reason))

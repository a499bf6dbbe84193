"""What building a plan asks of the host, through one door, so that the answers can be checked again.

A plan depends on the host as well as on the profile: which bind sources exist, where
a symlink points, which `user.*` sysctls this kernel has, whether a cgroup is delegated,
the caller's hard limits, which file a profile name resolves to.  The modules that build a
plan ask those questions here.  While plancache records a build, every question is kept
with its answer (an OSError counts as an answer: its errno); a cached plan is used again
only when the host, asked the same questions, gives the same answers (`still_true`).  So
the host is still checked on every run, as profile.py promises; only the work of
deriving the plan from the answers is saved.

What is not asked here is part of the cache key (plancache.py): the command line, the
working directory, the environment and the ids of the caller.

Recording is for the CLI, which is one thread; the API (threaded callers) never records,
and then every function here is its os equivalent and nothing more.
"""
import os

_record = None          # a list of (question, args, answer) while plancache records a build


def _listdir(path):
    return sorted(os.listdir(path))


def _read(path):
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def _stat(path):
    st = os.stat(path)
    return st.st_mode, st.st_size, st.st_mtime_ns


def _user_name(uid):
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _hard_limits():
    # /proc/self/limits rather than the resource module: one read, and no extension module
    # to load on every run.  The kernel prints a line per RLIMIT_* number, in their order,
    # "%-25s %-20s %-20s %-10s": the name, the soft limit, the hard limit, the unit.
    try:
        with open("/proc/self/limits") as f:
            lines = f.read().splitlines()[1:]
    except OSError:                     # no /proc (a container that masks it): the slower way
        import resource
        return tuple(resource.getrlimit(i)[1] for i in range(resource.RLIMIT_RTTIME + 1))
    return tuple(-1 if hard == "unlimited" else int(hard) for _, hard in (line[26:].split()[:2] for line in lines))


QUESTIONS = {
    "isfile": os.path.isfile, "isdir": os.path.isdir, "islink": os.path.islink, "exists": os.path.exists,
    "access": os.access, "realpath": os.path.realpath, "readlink": os.readlink, "listdir": _listdir,
    "read": _read, "stat": _stat, "hard_limits": _hard_limits, "user_name": _user_name,
}


def _ask(question, *args):
    try:
        answer = QUESTIONS[question](*args)
    except OSError as e:
        if _record is not None:
            _record.append((question, args, ("errno", e.errno)))
        raise
    if _record is not None:
        _record.append((question, args, ("=", answer)))
    return answer


# os.path's and os's answers, recorded
def isfile(path):
    return _ask("isfile", path)


def isdir(path):
    return _ask("isdir", path)


def islink(path):
    return _ask("islink", path)


def exists(path):
    return _ask("exists", path)


def access(path, mode):
    return _ask("access", path, mode)


def realpath(path):
    return _ask("realpath", path)


def readlink(path):
    return _ask("readlink", path)


def listdir(path):
    """The names in a directory, sorted."""
    return _ask("listdir", path)


def read(path):
    """A text file's whole content (raises OSError as open does)."""
    return _ask("read", path)


def stat(path):
    """(st_mode, st_size, st_mtime_ns) of `path`, following links (raises OSError as os.stat does)."""
    return _ask("stat", path)


def hard_limits():
    """The caller's hard limits, indexed by resource.RLIMIT_* number; -1 is unlimited
    (resource.RLIM_INFINITY).  Not the soft ones: a caller may change those freely, and
    a plan depends only on the hard ones."""
    return _ask("hard_limits")


def user_name(uid):
    """The name of the user `uid` in the host's user database, or None."""
    return _ask("user_name", uid)


def start_recording():
    global _record
    _record = []


def stop_recording():
    """The facts asked since start_recording(), and recording off."""
    global _record
    facts, _record = _record, None
    if facts is None:
        return None
    seen, unique = set(), []
    for fact in facts:          # a question asked twice (and answered alike) is checked once
        text = repr(fact)       # (answers hold lists: not hashable themselves)
        if text not in seen:
            seen.add(text)
            unique.append(fact)
    return unique


def still_true(facts):
    """Does the host answer every recorded question as it did?"""
    for question, args, answer in facts:
        try:
            now = ("=", QUESTIONS[question](*args))
        except OSError as e:
            now = ("errno", e.errno)
        if now != answer:
            return False
    return True

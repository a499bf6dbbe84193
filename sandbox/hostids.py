"""Host ids for a root caller: untrusted code never runs as the host's uid 0.

A root caller (a judge service under systemd, a container's default user) maps the
sandbox's user onto an unprivileged host id instead of onto itself, as isolate does.
Each concurrently running sandbox gets an id of its own, so the kernel's per-uid limits
(RLIMIT_NPROC: the process limit) and file ownership are the run's alone.

The id is claimed with an exclusive `flock` on a file named after it, held for the run:
two runner processes on the host can never hold the same id at once, and the kernel
releases the claim if the runner dies (the sandbox dies with it).

Range: SANDBOX_HOST_IDS=FIRST-LAST if set; else the subordinate block of a `sandbox`
system user in /etc/subuid (65536 ids: `useradd --system sandbox` then
`usermod --add-subuids 200000-265535 --add-subgids 200000-265535 sandbox`); else
60000-60999.  The gid is the same number as the uid.
"""
import os

from . import hostfacts
from .errors import SetupError

LOCK_DIR = "/run/sandbox/host-ids"
DEFAULT_RANGE = (60000, 60999)
ENV = "SANDBOX_HOST_IDS"


def caller_is_root():
    """Root of the host: uid 0 in the initial user namespace (whose map is the identity over
    every id).  uid 0 of a user namespace (`unshare -r`, a rootless container) is an ordinary
    user outside, and runs as the unprivileged path does."""
    if os.geteuid() != 0:
        return False
    try:
        return hostfacts.read("/proc/self/uid_map").split() == ["0", "0", "4294967295"]
    except OSError:
        return True


def subordinate_range(names, path="/etc/subuid", most=65536):
    """(first, last) of the first range in `path` (/etc/subuid, /etc/subgid: NAME:START:COUNT)
    whose NAME is one of `names` (a user's name or its number), at most `most` ids; or None."""
    try:
        for line in hostfacts.read(path).splitlines():
                name, _, rest = line.strip().partition(":")
                start, _, count = rest.partition(":")
                if name in names and start.isascii() and start.isdigit() and count.isascii() and count.isdigit() \
                        and int(count) > 0:
                    return int(start), int(start) + min(int(count), most) - 1
    except OSError:
        pass
    return None


def id_range():
    """(first, last) host ids runs may take, and where that range was configured."""
    text = os.environ.get(ENV)
    if text is not None:
        first, sep, last = text.partition("-")
        if not (sep and first.isascii() and first.isdigit() and last.isascii() and last.isdigit()
                and 0 < int(first) <= int(last) < 2 ** 32 - 1):
            raise SetupError(f"{ENV}={text[:40]!r} is not a range of host ids", ENV,
                             "write FIRST-LAST with 0 < FIRST <= LAST, e.g. 60000-60999")
        return int(first), int(last)
    return subordinate_range(("sandbox",)) or DEFAULT_RANGE


class Claim:
    """One claimed host id, held until release()."""
    __slots__ = ("uid", "gid", "_fd")

    def __init__(self, uid, fd):
        self.uid = self.gid = uid
        self._fd = fd

    def release(self):
        if self._fd is not None:
            os.close(self._fd)          # closing drops the lock
            self._fd = None


def step():
    """The host step that claims a run's id (a root caller's plans have it first)."""
    from .hoststep import HostStep
    ids = id_range()

    def act(run):
        run.host = claim(ids)
        run.on_close(run.host.release)      # after the run: init and every process of that id are gone
    return HostStep("host_id", "claim an unprivileged host id for this run (its processes never run as the "
                               "host's uid 0; no other run holds that id meanwhile)",
                    {"range": f"{ids[0]}-{ids[1]}", "lock": f"flock on {LOCK_DIR}/<id>, held for the run"}, act)


def claim(ids=None):
    """Claim a free id of `ids` (first, last), default id_range()."""
    import fcntl                        # (only a root caller's run claims)
    first, last = ids or id_range()
    try:
        os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
    except OSError as e:
        raise SetupError(f"cannot create {LOCK_DIR} to claim a host id: {e.strerror}", "host ids",
                         "run as root with a writable /run, or as an unprivileged user") from None
    count = last - first + 1
    start = os.getpid() % count            # spread concurrent runners over the range
    for i in range(count):
        uid = first + (start + i) % count
        try:
            fd = os.open(f"{LOCK_DIR}/{uid}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise SetupError(f"cannot claim host id {uid} in {LOCK_DIR}: {e.strerror}", "host ids",
                             f"{LOCK_DIR} must be root's and writable by root") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return Claim(uid, fd)
    raise SetupError(f"all {count} host ids {first}-{last} are in use by running sandboxes", "host ids",
                     f"wait for runs to finish, or widen the range ({ENV}=FIRST-LAST)")

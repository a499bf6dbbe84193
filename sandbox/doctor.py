"""`sandbox doctor`: what this host can and cannot do for the sandbox, one line per capability.

Each check says three things, because a user needs all three to act: whether it works here
(ok / no / warn), what that means for them, and the exact fix.  Checks probe the real thing
where that is cheap and harmless (a real sandbox run, a clone3 call with no arguments) and
read configuration where probing would change the host (sysctls, cgroup files); nothing here
writes outside the caller's cache directory.

A check is `required` when the built-in profiles cannot run without it: the exit status is 0
when every required check passes, 1 otherwise (the table says which failed and why).
"""
import ctypes
import errno as errno_mod
import json
import os
import sys

OK, NO, WARN = "ok", "no", "warn"
MARKS = {OK: "\u2714", NO: "\u2718", WARN: "!"}     # the table's marks; --json keeps the words
EXIT_ALL_REQUIRED_WORK, EXIT_SOMETHING_REQUIRED_FAILS = 0, 1


class Check:
    __slots__ = ("name", "state", "meaning", "fix", "required", "detail")

    def __init__(self, name, state, meaning, fix="", required=False, detail=""):
        self.name, self.state, self.meaning, self.fix = name, state, meaning, fix
        self.required, self.detail = required, detail

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _kernel():
    release = os.uname().release
    parts = release.split("-")[0].split(".")
    try:
        return release, (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        return release, (0, 0)


# ------------------------------------------------------------------ user namespaces

def check_userns():
    """The one capability nothing works without.  The sysctls say why it may fail; a real
    sandbox run (the launcher's own clone, id map, mounts, pivot_root and exec) says
    whether it does."""
    from .errors import SandboxError
    blockers = []
    if _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        blockers.append(("kernel.unprivileged_userns_clone = 0", "sysctl -w kernel.unprivileged_userns_clone=1"))
    if _read("/proc/sys/user/max_user_namespaces") == "0":
        blockers.append(("user.max_user_namespaces = 0", "sysctl -w user.max_user_namespaces=15000"))
    if _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1" and os.geteuid() != 0:
        blockers.append(("AppArmor restricts unprivileged user namespaces (Ubuntu >= 23.10)",
                         "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile "
                         "granting 'userns,' to sandbox-launch (see README: Running the service for real)"))
    try:
        from . import runner
        result = runner.run("native", ["/bin/true"], limits={"wall_time": "20s"})
        if result.status == "OK":
            detail = "; ".join(b[0] for b in blockers)
            return Check("user namespaces", OK, "sandboxes can be created here (a test run of /bin/true passed)",
                         required=True, detail=detail)
        why, _, hint = (result.message or result.status).partition("\n  fix: ")
    except SandboxError as e:
        why, hint = e.what, e.fix
    fix = "; ".join(b[1] for b in blockers) or hint or \
        "run `sandbox run --profile native -- /bin/true` to see the failing step"
    return Check("user namespaces", NO, f"no sandbox can run here: {why}", fix, required=True,
                 detail="; ".join(b[0] for b in blockers))


def check_container(sandboxes_work):
    """A container changes what fails and why: its own seccomp profile refusing unshare/clone
    with namespace flags, a masked or read-only /proc.  Where sandboxes work anyway, being in a
    container is only worth knowing."""
    signs = []
    if os.path.exists("/.dockerenv"):
        signs.append("docker (/.dockerenv)")
    if os.path.exists("/run/.containerenv"):
        signs.append("podman (/run/.containerenv)")
    container = _read("/proc/1/environ")
    if container and "container=" in container:
        signs.append("container= in pid 1's environment")
    seccomp_mode = None
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("Seccomp:"):
            seccomp_mode = line.split()[1]
    masked = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list") if _masked(p)]
    if not signs:
        extra = " (a seccomp filter is already applied to this process)" if seccomp_mode == "2" else ""
        return Check("container", OK, "not running inside a container" + extra)
    what = ", ".join(signs)
    if sandboxes_work:
        return Check("container", OK, f"inside a container ({what}), which lets sandboxes run")
    notes = []
    if seccomp_mode == "2":
        notes.append("a seccomp filter applies to this process: a container's default profile refuses unshare, "
                     "clone with namespace flags, mount and pivot_root")
    if masked:
        notes.append(f"/proc is masked ({', '.join(masked)}): the kernel refuses a new procfs in a user namespace "
                     "while parts of /proc are covered")
    return Check("container", WARN, f"inside a container: {what}" + (f"; {'; '.join(notes)}" if notes else ""),
                 "docker/podman: --security-opt seccomp=unconfined (or a profile allowing unshare, clone, mount, "
                 "pivot_root, setns) --security-opt systempaths=unconfined (an unmasked /proc); see README")


def _masked(path):
    """Covered by a bind mount (a container's masking binds /dev/null or a tmpfs over it)."""
    for line in (_read("/proc/self/mountinfo") or "").splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == path:
            return True
    return False


def _outer_uid():
    """Our uid as the initial user namespace sees it, or None when we are in no user
    namespace of our own (uid_map is the identity over the whole range)."""
    first = (_read("/proc/self/uid_map") or "0 0 4294967295").split()
    if first == ["0", "0", "4294967295"]:
        return None
    inside, outside = int(first[0]), int(first[1])
    return outside + os.geteuid() - inside


def check_root():
    from .hostids import caller_is_root
    outer = _outer_uid()
    if not caller_is_root():
        seen = "" if outer is None else f" (uid {outer} outside this user namespace)"
        return Check("caller", OK, f"running as uid {os.geteuid()}{seen}, not the host's root: the program runs as "
                     "you outside")
    from .hostids import id_range
    first, last = id_range()
    return Check("caller", WARN, f"running as root: each run claims an unprivileged host id from {first}-{last}, "
                 "so the program never runs as uid 0; files it writes to rw binds belong to that id",
                 "a dedicated unprivileged user is simpler (see README: Running it for real)")


# ------------------------------------------------------------------ ids

def _subordinate(path, user, uid):
    text = _read(path)
    if text is None:
        return None
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)):
            return f"{parts[1]}+{parts[2]}"
    return None


def check_subordinate_ids():
    import pwd
    import shutil
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    tools = [t for t in ("newuidmap", "newgidmap") if shutil.which(t)]
    uids, gids = _subordinate("/etc/subuid", user, uid), _subordinate("/etc/subgid", user, uid)
    missing_tools = [t for t in ("newuidmap", "newgidmap") if t not in tools]
    if missing_tools:
        return Check("subordinate ids", WARN, f"{' and '.join(missing_tools)} not installed: only one id (yours) "
                     "can be mapped into a sandbox; `sandbox image build` (mmdebstrap) needs more",
                     "apt install uidmap")
    if not uids or not gids:
        return Check("subordinate ids", WARN, f"no subordinate id range for {user} in "
                     f"{'/etc/subuid' if not uids else '/etc/subgid'}: only one id can be mapped",
                     f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}")
    return Check("subordinate ids", OK, f"newuidmap/newgidmap present; {user} has uids {uids}, gids {gids}")


# ------------------------------------------------------------------ cgroups

def check_cgroup():
    from . import cgroup
    d = cgroup.discover()
    if d:
        checks = [Check("cgroup v2 delegation", OK, f"runs get a cgroup of their own under {d.base}: memory (page "
                        "cache, tmpfs), processes and CPU are enforced by the kernel")]
    else:
        checks = [Check("cgroup v2 delegation", WARN, f"no delegated cgroup ({d.reason}): limits are sampled and "
                        "backed by rlimits; reports say degraded: cgroup", cgroup.HOW_TO_DELEGATE)]
    mount = cgroup._mount_point()
    if mount is None:
        return checks
    available = (_read(f"{mount}/cgroup.controllers") or "").split()
    missing = [c for c in cgroup.CONTROLLERS if c not in available]
    if missing:
        checks.append(Check("cgroup v2 controllers", WARN, f"at the root: {' '.join(available) or 'none'}; "
                            f"{', '.join(missing)} bound elsewhere (cgroup v1?)",
                            "boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2 only)"))
    _, version = _kernel()
    peak = version >= (5, 19) or any(os.path.exists(os.path.join(mount, p, "memory.peak"))
                                     for p in ("init.scope", "system.slice", "user.slice"))
    checks.append(Check("memory.peak", OK if peak else WARN,
                        "the kernel reports a cgroup's memory peak (Linux >= 5.19)" if peak else
                        "no memory.peak: a cgroup run's peak memory is sampled", "" if peak else "a Linux >= 5.19 kernel"))
    return checks


def _syscall_errno(nr, *args):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args]) < 0:
        return ctypes.get_errno()
    return 0


def check_clone3():
    """clone3 with a NULL argument and size 0 fails at once: EINVAL where the call exists,
    ENOSYS where it does not (kernels before 5.7, or a filter answering ENOSYS)."""
    err = _syscall_errno(435, 0, 0)
    if err == errno_mod.ENOSYS:
        return Check("clone3 / CLONE_INTO_CGROUP", WARN, "clone3 is missing (Linux < 5.7, or a seccomp filter): "
                     "with a cgroup, the launcher moves itself into the run's cgroup first", "a Linux >= 5.7 kernel")
    return Check("clone3 / CLONE_INTO_CGROUP", OK, "init is born in the run's cgroup")


# ------------------------------------------------------------------ file systems

def check_overlay():
    from . import rootfs
    kernel = rootfs.kernel_overlay_works()
    checks = [Check("kernel overlayfs in a user namespace", OK if kernel else WARN,
                    "image roots use kernel overlayfs" if kernel else
                    "image roots need fuse-overlayfs instead (kernel overlayfs refused in a user namespace)",
                    "" if kernel else "a Linux >= 5.11 kernel")]
    binary = rootfs._fuse_bin()
    fuse_ok = os.access("/dev/fuse", os.R_OK | os.W_OK)
    if binary and fuse_ok:
        checks.append(Check("fuse-overlayfs", OK, f"{binary} and /dev/fuse usable: the fallback backend works"))
    else:
        why = "not installed" if not binary else (
            f"/dev/fuse is mode {oct(os.stat('/dev/fuse').st_mode & 0o777)[2:]}, not usable by you"
            if os.path.exists("/dev/fuse") else "/dev/fuse does not exist")
        fix = "apt install fuse-overlayfs" if not binary else "chmod 0666 /dev/fuse (distributions ship it so)"
        checks.append(Check("fuse-overlayfs", WARN if kernel else NO, f"fuse-overlayfs {why}" +
                            ("" if kernel else ": image roots cannot run here"), fix))
    return checks


# ------------------------------------------------------------------ seccomp

def check_seccomp():
    binding = None
    for module in ("seccomp", "pyseccomp"):
        try:
            __import__(module)
            binding = module
            break
        except (ImportError, OSError):
            continue
    checks = []
    if binding:
        checks.append(Check("libseccomp binding", OK, f"policies compile (module {binding})", required=True))
    else:
        checks.append(Check("libseccomp binding", NO, "no seccomp policy can be compiled: every built-in profile "
                            "has one", "apt install libseccomp2, then pip install pyseccomp in sandbox's environment",
                            required=True))
    actions = _read("/proc/sys/kernel/seccomp/actions_avail") or ""
    if "user_notif" in actions.split():
        checks.append(Check("seccomp user notification", OK, "a forbidden call is reported by name (SYS)",
                            required=True))
    else:
        checks.append(Check("seccomp user notification", NO, "the kernel lacks SECCOMP_RET_USER_NOTIF (Linux >= "
                            "5.0): kill rules cannot be reported", "a Linux >= 5.5 kernel", required=True))
    return checks


CHECKS = (check_root, check_subordinate_ids, check_cgroup, check_clone3, check_overlay, check_seccomp)


def run_checks():
    userns = check_userns()
    out = [userns, check_container(userns.state == OK)]
    for check in CHECKS:
        result = check()
        out.extend(result if isinstance(result, list) else [result])
    return out


def table(checks):
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{MARKS[c.state]} {c.name:<{width}}  {c.meaning}")
        if c.fix and c.state != OK:
            lines.append(f"  {'':<{width}}  fix: {c.fix}")
    failed = [c.name for c in checks if c.required and c.state != OK]
    lines.append("")
    lines.append("everything the built-in profiles need works here" if not failed else
                 f"the built-in profiles cannot run here: {', '.join(failed)}")
    return "\n".join(lines) + "\n"


def main(argv):
    from .errors import UsageError
    unknown = [a for a in argv if a != "--json"]
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r}", "sandbox doctor", "usage: sandbox doctor [--json]")
    checks = run_checks()
    ok = all(c.state == OK for c in checks if c.required)
    if "--json" in argv:
        json.dump({"ok": ok, "kernel": _kernel()[0], "checks": [c.as_dict() for c in checks]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(table(checks))
    return EXIT_ALL_REQUIRED_WORK if ok else EXIT_SOMETHING_REQUIRED_FAILS

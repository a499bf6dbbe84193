"""User ids: the user namespace and its single-id mapping.

Rootless means one id: the caller's uid/gid appear inside as the profile's
uid/gid (1000 by default), and nothing else is mapped.  The same clone makes
the pid namespace, so the process that writes the maps is already pid 1 of the
sandbox and nothing ever runs half-isolated, and the cgroup namespace, so the
sandbox sees its own cgroup as / (no host cgroup paths, nothing above it).
"""
import os

from . import hostfacts, hostids, launch
from .errors import ProfileError
from .step import Step

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWCGROUP = 0x02000000

# Per-user counters of the sandbox's user namespace.  The kernel charges each
# use to every user namespace up to the host's, so a cap here keeps a run from
# taking the caller's own allowance (128 inotify instances by default: a run
# that took them all left the caller's editor and build tools with EMFILE).
# Namespaces: exactly what init itself makes (pid and cgroup come with the
# clone; mount, UTS, IPC and network follow), then none; nested user
# namespaces never.  Counters this kernel lacks are skipped.
USER_CAPS = (("max_user_namespaces", 0), ("max_pid_namespaces", 1), ("max_cgroup_namespaces", 1),
             ("max_mnt_namespaces", 1), ("max_uts_namespaces", 1), ("max_ipc_namespaces", 1),
             ("max_net_namespaces", 1), ("max_time_namespaces", 0), ("max_inotify_instances", 16),
             ("max_inotify_watches", 8192), ("max_fanotify_groups", 16), ("max_fanotify_marks", 8192))

HINTS = {
    "EPERM": "unprivileged user namespaces are disabled or restricted on this host: "
             "Debian: sysctl -w kernel.unprivileged_userns_clone=1; Ubuntu >= 23.10 (AppArmor): "
             "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 or install an AppArmor profile "
             "for sandbox-launch; inside a container: allow unshare/clone in its seccomp profile",
    "ENOSPC": "the user namespace limit is reached or zero: sysctl -w user.max_user_namespaces=15000",
    "EINVAL": "the kernel refused the namespace flags; a kernel built without CONFIG_USER_NS or "
              "CONFIG_PID_NS cannot run the sandbox",
    "EACCES": "writing the id map was refused (AppArmor or a security module restricts user "
              "namespaces): see the EPERM fixes",
}


# What uid 0 inside keeps with subordinate ids (user.map: subordinate): ownership of its own
# namespace's files and ids -- CAP_CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, KILL,
# SETGID, SETUID -- as package managers and chown need; nothing over mounts, the network or
# the kernel (no CAP_SYS_ADMIN, NET_ADMIN...).  Namespaced: they reach only files whose
# owner is mapped (yours and your subordinate ids) and the sandbox's own processes.
SUBORDINATE_CAPS = sum(1 << cap for cap in range(8))


_cap_ops = None


def _user_cap_ops():
    """The USER_CAPS sysctls this kernel has (one directory listing, once a process: the set of
    /proc/sys/user files does not change while we run; each plan used to stat every one)."""
    global _cap_ops
    if _cap_ops is None:
        try:
            present = set(hostfacts.listdir("/proc/sys/user"))
        except OSError:
            present = set()
        _cap_ops = [launch.sysctl(f"/proc/sys/user/{name}", value) for name, value in USER_CAPS if name in present]
    return _cap_ops


def subordinate(profile):
    return profile.get("user", {}).get("map") == "subordinate"


def ids(profile, default=("caller", "caller")):
    """(uid inside, uid outside, gid inside, gid outside); `default` when the profile says nothing.
    With subordinate ids the caller is uid 0 inside (`caller` means 0)."""
    uid, gid = os.getuid(), os.getgid()
    user = profile.get("user", {})
    inside_uid = user.get("uid", default[0])
    inside_gid = user.get("gid", default[1])
    me_uid, me_gid = (0, 0) if subordinate(profile) else (uid, gid)
    return (me_uid if inside_uid == "caller" else inside_uid, uid,
            me_gid if inside_gid == "caller" else inside_gid, gid)


def subordinate_maps(profile):
    """The id maps newuidmap/newgidmap write: inside 0 is the caller, 1-65535 its ranges."""
    uid, gid = os.getuid(), os.getgid()
    name = hostfacts.user_name(uid) or str(uid)
    where = f"{profile.origin('user.map')}: user.map"
    if hostids.caller_is_root():
        raise ProfileError("a root caller's runs are mapped to a claimed unprivileged host id, not to subordinate "
                           "ranges", where, "run as an unprivileged user with a subordinate range, or drop "
                           "user.map")
    for tool in ("newuidmap", "newgidmap"):
        if not hostfacts.access(f"/usr/bin/{tool}", os.X_OK):
            raise ProfileError(f"/usr/bin/{tool} is not installed", where, "apt install uidmap")
    maps = []
    for path, own in (("/etc/subuid", uid), ("/etc/subgid", gid)):
        found = hostids.subordinate_range((name, str(uid)), path, 65535)
        if found is None:
            raise ProfileError(f"{name} has no subordinate range in {path}", where,
                               f"as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name} "
                               f"(the line '{name}:100000:65536' in /etc/subuid and /etc/subgid)")
        maps.append(f"0 {own} 1 1 {found[0]} {found[1] - found[0] + 1}")
    return maps


def step(profile, runner_pid, default_ids=("caller", "caller"), root_caller=False):
    uid_in, uid_out, gid_in, gid_out = ids(profile, default_ids)
    if subordinate(profile):
        uid_map, gid_map = subordinate_maps(profile)
        mapping = [launch.outmap("newidmap", uid_map, gid_map)]
        params = {"uid map": uid_map, "gid map": gid_map, "uid": f"{uid_in} inside"}
    elif root_caller:
        # The host's root never runs untrusted code: the sandbox's user is an unprivileged
        # host id claimed for this run (hostids.py), mapped by the launcher from outside.
        mapping = [launch.outmap("write", f"{uid_in} {launch.HOST_ID} 1", f"{gid_in} {launch.HOST_ID} 1")]
        outside = "an unprivileged host id claimed per run (the caller is root)"
        params = {"uid": f"{uid_in} inside = {outside}", "gid": f"{gid_in} inside = the same id"}
    else:
        mapping = [launch.idmap(uid_in, uid_out, gid_in, gid_out)]
        params = {"uid": f"{uid_in} inside = {uid_out} outside", "gid": f"{gid_in} inside = {gid_out} outside"}
    clone = launch.clone(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWCGROUP)
    return Step(
        "user_namespace",
        "new user, pid and cgroup namespaces; the launcher and init die with the runner",
        params | {"setgroups": "deny", "pid 1": "the sandbox's init",
                  "nested user namespaces": "disabled (user.max_user_namespaces = 0 inside)",
                  "per-user caps": ", ".join(f"{k} {v}" for k, v in USER_CAPS)},
        [launch.ppid(runner_pid)]
        + (mapping + [clone] if root_caller or subordinate(profile) else [clone] + mapping)
        # max_user_namespaces 0 means nothing inside can create another user
        # namespace (and with it regain capabilities over new mount or network
        # namespaces: kernel attack surface).
        + _user_cap_ops(),
        HINTS)


def sandbox_ids_steps(profile, default_ids, root_caller):
    """Where the map is written from outside, init starts as the caller and takes the sandbox's
    ids once the bind sources are held (opened with the caller's access, as any caller's own
    files are): every mount point, tmpfs and process after that belongs to the sandbox's user --
    a root caller's claimed host id, or (subordinate ids) the profile's uid in its range."""
    if not (root_caller or subordinate(profile)):
        return []
    uid_in, _, gid_in, _ = ids(profile, default_ids)
    outside = "a subordinate id unless 0" if subordinate(profile) else "the run's unprivileged host id outside"
    return [Step("sandbox_ids", f"init becomes the sandbox's user ({outside})",
                 {"uid": uid_in, "gid": gid_in}, [launch.setids(uid_in, gid_in)])]

"""UTS, IPC and network namespaces: own hostname, own SysV IPC and POSIX
queues, and (network: none) a network with nothing but a loopback.  And the
keyring, which no namespace covers: a fresh, empty session keyring, so the
caller's keys do not reach the program."""
from . import launch
from .schema import DEFAULTS
from .step import Step

CLONE_NEWNS = 0x00020000      # used by the mount namespace step (mounts.py) and the overlay probe (rootfs.py)
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000


def step(profile):
    hostname = profile.get("hostname", DEFAULTS["hostname"])
    network = profile.get("network", DEFAULTS["network"])
    flags = CLONE_NEWUTS | CLONE_NEWIPC
    ops = []
    if network == "none":
        flags |= CLONE_NEWNET
    ops.append(launch.unshare(flags))
    ops.append(launch.hostname(hostname))
    if network == "none":
        ops.append(launch.loopback())
    ops.append(launch.keyring())
    return Step(
        "uts_ipc_net",
        "own hostname, IPC and network namespaces; a new empty session keyring",
        {"hostname": hostname, "session keyring": "new and empty (keyctl JOIN_SESSION_KEYRING)",
         "network": "none: new namespace with only lo (up)" if network == "none" else "host: shared with the host"},
        ops,
        {"EPERM": "the kernel refused new UTS/IPC/network namespaces inside the user namespace",
         "EDQUOT": "your key quota is used up (a new session keyring is one key): see /proc/key-users, or raise "
                   "kernel.keys.maxkeys",
         "ENOSYS": "this kernel has no keyrings (CONFIG_KEYS): the sandbox needs them to drop the caller's keys"})

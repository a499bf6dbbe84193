"""UTS, IPC and network namespaces: own hostname, own SysV IPC and POSIX
queues, and (network: none) a network with nothing but a loopback."""
from .step import Step, op

CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000


def step(profile):
    hostname = profile.get("hostname", "sandbox")
    network = profile.get("network", "none")
    flags = CLONE_NEWUTS | CLONE_NEWIPC
    ops = []
    if network == "none":
        flags |= CLONE_NEWNET
    ops.append(op("unshare", flags))
    ops.append(op("hostname", hostname))
    if network == "none":
        ops.append(op("loopback"))
    return Step(
        "uts_ipc_net",
        "own hostname, IPC and network namespaces",
        {"hostname": hostname,
         "network": "none: new namespace with only lo (up)" if network == "none" else "host: shared with the host"},
        ops,
        {"EPERM": "the kernel refused new UTS/IPC/network namespaces inside the user namespace"})

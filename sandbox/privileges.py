"""What the program process gives up just before exec: privileges, the
controlling terminal, inherited file descriptors, its life after its parent."""
from . import launch
from .step import Step


def steps(keep_caps=0):
    """keep_caps: the capability mask uid 0 inside keeps (userns.SUBORDINATE_CAPS with
    subordinate ids), else 0: none for anyone."""
    drop = (Step("drop_privileges",
                 "no_new_privs; every capability dropped (bounding, ambient, inheritable, permitted, effective); "
                 "securebits locked so even uid 0 inside gains none on exec",
                 {"no_new_privs": 1, "capabilities": "none"},
                 [launch.nnp(), launch.caps()]) if not keep_caps else
            Step("drop_privileges",
                 "no_new_privs; every capability dropped but the file-ownership set, which uid 0 inside keeps over "
                 "its own user namespace (subordinate ids); a change to another uid drops it",
                 {"no_new_privs": 1, "capabilities kept by uid 0": f"0x{keep_caps:x} (chown, dac_override, "
                  "dac_read_search, fowner, fsetid, kill, setgid, setuid)"},
                 [launch.nnp(), launch.caps(keep_caps)]))
    return [
        drop,
        Step("setsid",
             "new session without a controlling terminal (no TIOCSTI into the caller's terminal)",
             {}, [launch.setsid()]),
        Step("close_fds", "close every file descriptor except 0, 1 and 2", {}, [launch.closefds()]),
        Step("die_with_parent", "the program is killed if the sandbox's init dies", {"signal": "SIGKILL"},
             [launch.pdeathsig()]),
    ]

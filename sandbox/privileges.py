"""What the program process gives up just before exec: privileges, the
controlling terminal, inherited file descriptors, its life after its parent."""
from . import launch
from .step import Step


def steps():
    return [
        Step("drop_privileges",
             "no_new_privs; every capability dropped (bounding, ambient, inheritable, permitted, effective); "
             "securebits locked so even uid 0 inside gains none on exec",
             {"no_new_privs": 1, "capabilities": "none"},
             [launch.nnp(), launch.caps()]),
        Step("setsid",
             "new session without a controlling terminal (no TIOCSTI into the caller's terminal)",
             {}, [launch.setsid()]),
        Step("close_fds", "close every file descriptor except 0, 1 and 2", {}, [launch.closefds()]),
        Step("die_with_parent", "the program is killed if the sandbox's init dies", {"signal": "SIGKILL"},
             [launch.pdeathsig()]),
    ]

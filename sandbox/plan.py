"""The plan: a profile and a request turned into an ordered list of named steps.

The order below IS the architecture.  Each step comes from the module that
owns its concern; this file only decides the sequence, and the launcher
carries it out exactly in this sequence (see launcher/launcher.c).  Steps up
to `fork` run in the sandbox's init (pid 1), the rest in the program process.
The plan's first steps, where they apply, are host steps (hoststep.py): the
runner carries them out itself, in this order, before it spawns the launcher.
"""
import os

from . import limits as limits_mod
from . import cgroup as cgroup_mod, hostfacts, hostids, launch, mounts, namespaces, privileges, rootfs, seccomp, userns
from .errors import EXIT_NOT_FOUND, ProfileError, SetupError, UsageError
from .schema import DEFAULTS
from .step import Plan, Step


class Request:
    """What the caller asks for beyond the profile.  Either `argv` (run this
    program) or `script` (a host file, run the way the profile says)."""
    __slots__ = ("argv", "script", "args", "limits", "binds", "env", "cwd", "seccomp", "require_cgroup",
                 "keep_changes", "keep_workdir", "files_in", "scratch")

    def __init__(self, argv=None, script=None, args=(), limits=None, binds=(), env=None, cwd=None, seccomp=False,
                 require_cgroup=False, keep_changes=None, keep_workdir=False, files_in=None, scratch=None):
        self.argv, self.script, self.args = argv, script, list(args)
        self.limits, self.binds, self.env, self.cwd = limits or {}, list(binds), env or {}, cwd
        self.seccomp = seccomp      # False: the profile's; None: no filter; else a canonical policy
        self.require_cgroup = require_cgroup
        self.keep_changes = keep_changes    # a directory for an image run's writable layer
        self.keep_workdir = keep_workdir    # hand the working directory (a tmpfs) to the runner: files_out
        self.files_in = files_in            # {path inside: bytes or host path} (files.inputs)
        self.scratch = scratch              # the host directory where files_in's bytes are written


def _which(name, path):
    for d in path.split(":"):
        candidate = os.path.join(d or ".", name)
        if hostfacts.isfile(candidate) and hostfacts.access(candidate, os.X_OK):
            return candidate
    return None


def check_interpreter(profile, env, img=None):
    """Raise ProfileError if the profile's script.interpreter is not found: on the host,
    or in the image for an image root.  `run SCRIPT`, `sandbox check` and the judge's
    compile share it, so each names the missing package the same way."""
    interpreter = profile.get("script", {}).get("interpreter", [])
    if not interpreter:
        return
    prog, path = interpreter[0], env.get("PATH", "/usr/bin:/bin")
    where = f"{profile.origin('script.interpreter')}: script.interpreter"
    if img is not None:
        from .image import which
        if which(img.store, img.image, prog, path) is None:
            raise ProfileError(f"interpreter {prog} is not in the image {img.image['name']} (searched PATH={path})",
                               where, "build or import an image that has it, or change the interpreter")
        return
    found = hostfacts.exists(prog) if "/" in prog else _which(prog, path) is not None
    if not found:
        raise ProfileError(f"interpreter {prog} is not present on this host"
                           + ("" if "/" in prog else f" (searched PATH={path})"), where,
                           f"install it (e.g. apt install {os.path.basename(prog)}), or use a profile whose "
                           "interpreter exists (sandbox profiles)")


def script_argv(profile, inside, args=()):
    """The interpreter's argv with the script at `inside`: "{script}" in the interpreter
    places it there (gcc ... {script} -lm); else it comes last."""
    interpreter = list(profile.get("script", {}).get("interpreter", []))
    if "{script}" in interpreter:
        return [inside if a == "{script}" else a for a in interpreter] + list(args)
    return interpreter + [inside] + list(args)


def _program(profile, request, env, img=None):
    """argv inside the sandbox, and the script bind (host path, path inside) if any."""
    if request.argv:
        return list(request.argv), None
    if request.script is None:
        raise UsageError("nothing to run", "sandbox run", "give a SCRIPT, or -- PROGRAM [ARGS]")
    script = os.path.abspath(request.script)
    if not hostfacts.isfile(script):
        raise UsageError(f"script {request.script} does not exist", "sandbox run",
                         "check the path (it is read from the host and bound read-only into the sandbox)",
                         exit_code=EXIT_NOT_FOUND)
    check_interpreter(profile, env, img)
    inside = os.path.join(profile.get("script", {}).get("dir", DEFAULTS["script.dir"]), os.path.basename(script))
    return script_argv(profile, inside, request.args), (script, inside)


def _fork_step(cwd, init_ops, keep_workdir=False):
    keep = [launch.keepdir(cwd)] if keep_workdir else []
    return Step("fork", "init enters the working directory and forks the program (pid 2), then stays pid 1: it "
                        f"reaps, samples the whole tree every {limits_mod.SAMPLE_MS} ms, answers seccomp "
                        "notifications, and its exit ends every process of the sandbox",
                {"cwd": cwd, "sample_interval": f"{limits_mod.SAMPLE_MS} ms"}
                | ({"files_out": f"{cwd} (a tmpfs) handed to the runner as a directory descriptor"} if keep else {}),
                [launch.chdir(cwd), launch.sample(limits_mod.SAMPLE_MS), *init_ops, *keep, launch.fork()],
                {"ENOENT": "the working directory does not exist inside the sandbox: use a tmpfs path (/box, /tmp) "
                           "or a bound directory"})


def _exec_step(argv, env):
    envlist = [f"{k}={v}" for k, v in env.items()]
    return Step("exec", "execve with the profile's clean environment (PATH searched inside)",
                {"argv": argv, "env": envlist},
                [launch.exec_(argv, envlist)],
                {"ENOENT": "the program does not exist inside the sandbox: bind its directory, or use a path "
                           "that is inside the profile's rootfs binds",
                 "EACCES": "the program is not executable (or lives on a noexec mount): chmod +x it",
                 "ENOEXEC": "the file is not a program this kernel can run (wrong architecture, or a script "
                            "without #!): run it through an interpreter profile"})


def environment(profile, img=None, extra=None):
    """The program's whole environment: an image's own Env, then the profile's, then the
    caller's; a null value removes a variable."""
    config = img.image["config"] if img else {}
    env = dict(e.split("=", 1) for e in (config.get("Env") or []) if "=" in e)
    env.update(profile.get("env", {}))
    env.update(extra or {})
    return {k: v for k, v in env.items() if v is not None}


def build(profile, request):
    """Profile + request -> Plan.  Host checks happen here, so a plan that
    builds can run; errors name the file and key, or the option."""
    img = rootfs.resolve(profile, request.keep_changes)
    config = img.image["config"] if img else {}
    env = environment(profile, img, request.env)
    delegation = cgroup_mod.discover(profile.get("cgroup_parent"))
    if not delegation and (request.require_cgroup or profile.get("require_cgroup")):
        where = "--require-cgroup" if request.require_cgroup else f"{profile.origin('require_cgroup')}: require_cgroup"
        raise SetupError(f"a cgroup is required but none can be used: {delegation.reason}", where,
                         cgroup_mod.HOW_TO_DELEGATE)
    effective = limits_mod.effective(profile, request.limits, cgroup=bool(delegation))
    _check_caller_limits(profile, request, effective)
    argv, script = _program(profile, request, env, img)
    cwd = request.cwd or profile.get("cwd") or config.get("WorkingDir") or "/"     # the one resolution
    extra, copies = [], []
    if request.files_in:
        from . import files
        extra, copies = files.inputs(request.files_in, request.scratch, cwd if request.keep_workdir else None)
    binds = mounts.resolve_binds(profile, request.binds + extra, script, copies)
    policy = profile.get("seccomp") if request.seccomp is False else request.seccomp
    notify_ops, seccomp_step = seccomp.steps(policy)
    root_caller = hostids.caller_is_root()
    inside_ids = _image_user(config) if img else (DEFAULTS["user.uid"], DEFAULTS["user.gid"])
    mount_steps = mounts.steps(profile, binds, img, cwd if request.keep_workdir else None)
    steps = (
        # the runner's own steps on the host, before it spawns the launcher (hoststep.py)
        ([hostids.step()] if root_caller else [])   # first: the keep-changes directory and the run belong to it
        + ([rootfs.owned_step(img)] if img and img.ids else [])   # the layers with their tar's owners
        + ([_keep_changes_step(img)] if img and img.keep else [])
        + cgroup_mod.host_steps(delegation, effective, profile.get("cpuset"))
        # the launcher's, in this order
        + [cgroup_mod.step(delegation, effective, profile.get("cpuset")),
         userns.step(profile, launch.RUNNER_PID, inside_ids, root_caller)]
        + mount_steps[:1]                       # mount_namespace: bind sources held with the caller's access
        + userns.sandbox_ids_steps(profile, inside_ids, root_caller)   # then the run's own ids (root caller)
        + mount_steps[1:]                       # root_tmpfs ... pivot_root
        + [namespaces.step(profile),            # uts_ipc_net
           _fork_step(cwd, notify_ops, request.keep_workdir),
           limits_mod.step(effective)]
        + privileges.steps(userns.SUBORDINATE_CAPS if userns.subordinate(profile) else 0)
                                                # drop_privileges, setsid, close_fds, die_with_parent
        + [seccomp_step,                        # last before exec, after no_new_privs
           _exec_step(argv, env)]
    )
    return Plan(profile, steps, argv, env, cwd, effective, policy, delegation, img, root_caller,
                request.keep_workdir)


def _keep_changes_step(img):
    from .hoststep import HostStep
    return HostStep("keep_changes", "prepare the directory that keeps the run's writable layer (--keep-changes)",
                    {"directory": img.keep,
                     "creates": "upper/, work/ and changes.json (the image it applies to), unless it holds an "
                                "earlier run's changes of this image with these ids: they go on"},
                    lambda run: rootfs.prepare_keep(img.keep, img, run.owner()))


def _check_caller_limits(profile, request, effective):
    above = limits_mod.above_caller(effective)
    if above is None:
        return
    key, asked, hard = above
    if key == "address_space" and key not in request.limits and key not in profile.get("limits", {}):
        key = "memory"                       # the address-space backstop comes from the memory limit
    where = f"limits.{key}" if key in request.limits else f"{profile.origin('limits.' + key)}: limits.{key}"
    raise ProfileError(f"the run would set a hard limit of {asked} for {key}, above this caller's own hard "
                       f"limit {hard}; only the host's root can raise a hard limit", where,
                       f"lower {key}, or raise the caller's hard limit (ulimit -H, limits.conf, or a service "
                       "unit's Limit*=)")


def _image_user(config):
    """The image's User ("1000", "1000:100"; names need the image's /etc/passwd, which
    the sandbox does not read: then root, as an image without User runs)."""
    user = (config.get("User") or "").split(":")
    try:
        uid = int(user[0]) if user[0] else 0
        gid = int(user[1]) if len(user) > 1 and user[1] else uid
    except ValueError:
        return 0, 0
    return uid, gid

"""profile -> plan -> apply -> report, for one run.  This is `sandbox.run`."""
import os

from . import cgroup as cgroup_mod, launch, plan as plan_mod, profile as profile_mod, report, rootfs, schema, stdio
from .configfiles import unknown_keys
from .errors import SetupError
from .supervise import supervise


def _limit_overrides(limits, where):
    checks = schema.SCHEMA["limits"]
    unknown_keys(limits or {}, checks, where)
    return {key: checks[key](value, f"{where}.{key}") for key, value in (limits or {}).items()}


def prepare(profile, argv=None, *, script=None, args=(), limits=None, binds=(), env=None, cwd=None,
            seccomp=None, seccomp_policy=False, require_cgroup=False, keep_changes=None, keep_workdir=False,
            copies=()):
    """Load the profile and build the plan, checking everything that can be
    checked before anything runs.  `seccomp` (a policy name, path or "none")
    replaces the profile's policy; `seccomp_policy`, an already resolved one.
    Raises SandboxError subclasses."""
    if not isinstance(profile, profile_mod.Profile):
        profile = profile_mod.load(profile)
    policy = seccomp_policy
    if seccomp is not None:
        policy = profile_mod.resolve_seccomp(seccomp, None, [])
    parsed_binds = [schema.parse_bind(b, "--bind", base=os.getcwd()) for b in binds]
    if cwd is not None:
        cwd = schema.abs_path(cwd, "--cwd")
    request = plan_mod.Request(argv=list(argv) if argv else None, script=script, args=args,
                               limits=_limit_overrides(limits, "limits"), binds=parsed_binds,
                               env=dict(env or {}), cwd=cwd, seccomp=policy, require_cgroup=require_cgroup,
                               keep_changes=os.path.abspath(keep_changes) if keep_changes else None,
                               keep_workdir=keep_workdir, copies=copies)
    return plan_mod.build(profile, request)


def execute(plan, *, stdin=None, stdout=None, stderr=None, cancel=None, relay_timeout=None):
    """Run a prepared plan.  stdin: None (empty), bytes, a path, an fd, or
    stdio.Shared(fd); what each becomes, so that the program never holds a host
    file or the caller's terminal, is in stdio.py.  stdout/stderr: None
    (captured into the Result), a path or an fd (relayed), or a Sink.
    cancel: an fd; when it becomes readable the sandbox is killed (another
    thread ending this run, e.g. the other half of an interactive pair).
    relay_timeout: once the sandbox is gone, how long output relayed to an fd
    may wait for a reader that makes no progress (None: for ever)."""
    result, workdir = _execute(plan, stdin, stdout, stderr, cancel, relay_timeout)
    if workdir is not None:
        os.close(workdir)
    return result


def _execute(plan, stdin, stdout, stderr, cancel, relay_timeout):
    """execute(), and the working directory's descriptor when the plan keeps it (else None)."""
    import socket
    closing, cg, usage, sinks, stdin_, host = [], None, None, [], None, None
    keep = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) if plan.keep_workdir else None
    workdir = None
    try:
        stdin_ = stdio.open_stdin(stdin)
        out_sink = stdio.sink(stdout, "--stdout", closing)
        sinks.append(out_sink)
        err_sink = stdio.sink(stderr, "--stderr", closing)
        sinks.append(err_sink)
        if plan.host_ids:
            from . import hostids
            host = hostids.claim()
        if plan.rootfs and plan.rootfs.keep:
            rootfs.prepare_keep(plan.rootfs.keep, plan.rootfs, (host.uid, host.gid) if host else None)
        cg = _run_cgroup(plan)
        launched = launch.spawn(plan.encode(cg.path if cg else None, host.uid if host else None), stdin_.fd,
                                keep[1].fileno() if keep else None)
        stdin_.spawned()
        if keep:
            keep[1].close()
        outcome = supervise(launched, plan.limits, out_sink, err_sink, cg, cancel, relay_timeout, stdin_.feed)
        usage = cg.final() if cg else None
        if keep:
            # the launcher has exited: its message is there, or it never got that far
            keep[0].setblocking(False)
            try:
                _, fds, _, _ = socket.recv_fds(keep[0], 1, 1)
                workdir = fds[0] if fds else None
            except OSError:
                pass
    finally:
        if stdin_ is not None:
            stdin_.close()
        for sink in sinks:
            sink.close()
        for fd in closing:
            os.close(fd)
        if cg:
            cg.remove()
        if keep:
            for s in keep:
                s.close()
        if host:
            host.release()          # init and every process of that id are gone: the launcher reaped them
    degraded = [] if plan.cgroup else ["cgroup"]
    return report.build(plan, outcome, host_ids=(host.uid, host.gid) if host else None,
                        stdout=bytes(out_sink.captured) if out_sink.captured is not None else None,
                        stderr=bytes(err_sink.captured) if err_sink.captured is not None else None,
                        degraded=degraded, cgroup=usage, cgroup_path=cg.path if cg else None), workdir


def _run_cgroup(plan):
    """This run's fresh cgroup, or None without delegation."""
    if not plan.cgroup:
        return None
    cpuset = plan.profile.get("cpuset")
    error = cgroup_mod.enable(plan.cgroup, cpuset=bool(cpuset))
    try:
        if error is None:
            return cgroup_mod.RunCgroup.create(plan.cgroup.base, plan.limits, cpuset)
    except OSError as e:
        error = f"cannot set up a cgroup in {plan.cgroup.base}: {e.strerror}"
    raise SetupError(error, "cgroup", cgroup_mod.HOW_TO_DELEGATE)


def run(profile, argv=None, *, script=None, args=(), stdin=None, stdout=None, stderr=None,
        limits=None, binds=(), env=None, cwd=None, seccomp=None, require_cgroup=False, keep_changes=None,
        files_in=None, files_out=None, files_out_max=None, cancel=None):
    """Run `argv` (or `script` with `args`) in a sandbox described by `profile`
    (a built-in name, a path to a YAML file, or a loaded Profile) and return a
    Result.  Limits override the profile's ({"cpu_time": "1s", "memory": "64M"}).

    files_in: {path inside: bytes or host path}, bound read-only (copied, writable, when
    they go into the working directory of a run with files_out).  files_out: paths
    inside the working directory to read back after the run, at most `files_out_max`
    bytes each, into Result.files; failures go to Result.file_errors, one per file.
    With files_out the working directory is a tmpfs of the run (the profile's there,
    capped as it says), read back through a directory descriptor and gone after.

    Raises SandboxError (ProfileError, UsageError) for input that cannot run;
    a step that fails while the sandbox is built gives a Result with status XX."""
    import tempfile
    from . import files
    if not isinstance(profile, profile_mod.Profile):
        profile = profile_mod.load(profile)
    inside_cwd = cwd or profile.get("cwd") or "/"
    scratch = tempfile.mkdtemp(prefix="sandbox-in-") if files_in else None
    workdir = None
    try:
        extra, copies = files.inputs(files_in, scratch, inside_cwd if files_out else None)
        plan = prepare(profile, argv, script=script, args=args, limits=limits, binds=list(binds) + extra, env=env,
                       cwd=cwd, seccomp=seccomp, require_cgroup=require_cgroup, keep_changes=keep_changes,
                       keep_workdir=bool(files_out), copies=copies)
        result, workdir = _execute(plan, stdin, stdout, stderr, cancel, None)
        if files_out:
            result.files, result.file_errors = files.outputs(workdir, inside_cwd, files_out,
                                                             files_out_max or files.DEFAULT_OUT_MAX)
        return result
    finally:
        if workdir is not None:
            os.close(workdir)
        if scratch:
            import shutil
            shutil.rmtree(scratch, ignore_errors=True)

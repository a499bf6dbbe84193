"""profile -> plan -> apply -> report, for one run.  This is `sandbox.run`."""
import os

from . import launch, stdio
from .hoststep import HostRun, HostStep


def _limit_overrides(limits, where):
    from . import schema
    from .configfiles import unknown_keys
    checks = schema.SCHEMA["limits"]
    unknown_keys(limits or {}, checks, where)
    return {key: checks[key](value, f"{where}.{key}") for key, value in (limits or {}).items()}


def prepare(profile, argv=None, *, script=None, args=(), limits=None, binds=(), env=None, cwd=None,
            seccomp=None, seccomp_policy=False, require_cgroup=False, keep_changes=None, keep_workdir=False,
            files_in=None, scratch=None):
    """Load the profile and build the plan, checking everything that can be
    checked before anything runs.  `seccomp` (a policy name, path or "none")
    replaces the profile's policy; `seccomp_policy`, an already resolved one.
    `files_in` (see run) writes its bytes into the directory `scratch`.
    Raises SandboxError subclasses."""
    # Building a plan imports every module that contributes a step: here, not at the top, so
    # that a run whose plan comes from plancache.py (the CLI) imports none of them.
    from . import plan as plan_mod, profile as profile_mod, schema
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
                               keep_workdir=keep_workdir, files_in=files_in, scratch=scratch)
    return plan_mod.build(profile, request)


def execute(plan, *, stdin=None, stdout=None, stderr=None, cancel=None, relay_timeout=None, confirm=None):
    """Run a prepared plan.  stdin: None (empty), bytes, a path, an fd, or
    stdio.Shared(fd); what each becomes, so that the program never holds a host
    file or the caller's terminal, is in stdio.py.  stdout/stderr: None
    (captured into the Result), a path or an fd (relayed), or a Sink.
    cancel: an fd; when it becomes readable the sandbox is killed (another
    thread ending this run, e.g. the other half of an interactive pair).
    relay_timeout: once the sandbox is gone, how long output relayed to an fd
    may wait for a reader that makes no progress (None: for ever).
    confirm: a function called once the launcher is building the sandbox, before the program
    exists (the CLI checks a kept plan with it, plancache.py); when it returns False the
    launch is abandoned, nothing of it reported, and execute returns None.  The stdout and
    stderr Sinks given are closed then: a new execute needs new ones."""
    result, workdir = _execute(plan, stdin, stdout, stderr, cancel, relay_timeout, confirm)
    if workdir is not None:
        os.close(workdir)
    return result


def _execute(plan, stdin, stdout, stderr, cancel, relay_timeout, confirm=None):
    """execute(), and the working directory's descriptor when the plan keeps it (else None).
    The plan's host steps first (hoststep.py), in its order, then the launcher with the rest."""
    closing, usage, sinks, stdin_, keep, workdir = [], None, [], None, None, None
    run = HostRun()
    try:
        stdin_ = stdio.open_stdin(stdin)
        out_sink = stdio.sink(stdout, "--stdout", closing)
        sinks.append(out_sink)
        err_sink = stdio.sink(stderr, "--stderr", closing)
        sinks.append(err_sink)
        for step in plan.steps:
            if isinstance(step, HostStep):
                step.act(run)
        cg, host = run.cgroup, run.host
        if plan.keep_workdir:
            import socket       # (enum, selectors: only for runs that keep their working directory)
            keep = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        launched = launch.spawn(plan.encode(cg.path if cg else None, host.uid if host else None), stdin_.fd,
                                keep[1].fileno() if keep else None, gate=confirm is not None)
        stdin_.spawned()
        if keep:
            keep[1].close()
        # Imported here, while the launcher builds the sandbox: the first run of a process (the
        # CLI's only one) does this work beside the launcher's instead of before it.
        from . import report
        from .supervise import supervise
        if confirm is not None and not _confirmed(launched, confirm):
            return None, None
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
        if keep:
            for s in keep:
                s.close()
        run.close()                 # the run's cgroup removed, then its host id released
    degraded = [] if plan.cgroup else ["cgroup"]
    return report.build(plan, outcome, host_ids=run.owner(),
                        stdout=bytes(out_sink.captured) if out_sink.captured is not None else None,
                        stderr=bytes(err_sink.captured) if err_sink.captured is not None else None,
                        degraded=degraded, cgroup=usage, cgroup_path=cg.path if cg else None), workdir


def _confirmed(launched, confirm):
    """Ask `confirm` while init waits at its gate (launch.GATE_FD); let it go on, or abandon it."""
    try:
        ok = confirm()
    except BaseException:
        launched.abandon()
        raise
    if ok:
        launched.go()
    else:
        launched.abandon()
    return ok


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
    scratch, workdir = None, None
    if files_in:
        import tempfile
        scratch = tempfile.mkdtemp(prefix="sandbox-in-")
    try:
        plan = prepare(profile, argv, script=script, args=args, limits=limits, binds=binds, env=env, cwd=cwd,
                       seccomp=seccomp, require_cgroup=require_cgroup, keep_changes=keep_changes,
                       keep_workdir=bool(files_out), files_in=files_in, scratch=scratch)
        result, workdir = _execute(plan, stdin, stdout, stderr, cancel, None)
        if files_out:
            from . import files
            result.files, result.file_errors = files.outputs(workdir, plan.cwd, files_out,
                                                             files_out_max or files.DEFAULT_OUT_MAX)
        return result
    finally:
        if workdir is not None:
            os.close(workdir)
        if scratch:
            import shutil
            shutil.rmtree(scratch, ignore_errors=True)

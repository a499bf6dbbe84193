"""The `sandbox` command.

The hot path (`sandbox run`) imports only what a run needs: no argparse, no
PyYAML (profiles come from a cache), no json unless --report is given.
"""
import os
import sys

from .errors import EXIT_SANDBOX, SandboxError, UsageError, did_you_mean, shorten

USAGE = """\
usage: sandbox run --profile NAME|PATH [options] SCRIPT [ARGS...]
       sandbox run --profile NAME|PATH [options] -- PROGRAM [ARGS...]
       sandbox learn --profile P --output POLICY.yaml [options] (SCRIPT [ARGS...] | -- PROGRAM [ARGS...])
                                        run once logging every system call; write an allow-list
       sandbox image import NAME FILE   import a docker-save tarball, an OCI layout (dir or tar) or a rootfs tar
       sandbox image build NAME --debian SUITE [--packages P1,P2] [--mirror URL]
                                        build a Debian image without root (mmdebstrap, unshare mode)
       sandbox image ls | inspect NAME | rm NAME
       sandbox diff DIR                 what a run kept with --keep-changes DIR added, changed, deleted
       sandbox rm-changes DIR           remove a --keep-changes DIR (also files of your subordinate ids)
       sandbox profiles                 list built-in profiles
       sandbox profiles show NAME|PATH  print a profile fully resolved (after extends)
       sandbox profiles keys            every key a profile may hold: type, default, meaning
       sandbox check FILE.yaml          validate a profile
       sandbox doctor [--json]          what this host can and cannot do for the sandbox, with fixes
       sandbox serve [--host H] [--port P] ...  a Judge0-compatible judging service (sandbox serve --help)
       sandbox worker --database URL --broker URL  judge a `serve --broker` API's queues (sandbox worker --help)
       sandbox grade [DIR]              GitHub Classroom autograding, each test in a sandbox (sandbox grade --help)

run options:
  --profile P          built-in profile name, or path to a YAML profile (required)
  --explain            print the ordered plan and exit without running
  --report FILE        write the result as JSON to FILE
  --time DUR           CPU time limit of the whole process tree (alias --cpu-time)
  --wall-time DUR      wall-clock limit
  --memory SIZE        memory limit of the whole process tree
  --processes N        processes (and threads) at once
  --output-limit SIZE  bytes on stdout + stderr together
  --file-size SIZE     largest file the program may write
  --open-files N       open file descriptors per process
  --stack SIZE         stack size per process
  --address-space SIZE address space per process (default: memory + 1G, a backstop)
  --stdin FILE         program's stdin: a sealed copy of FILE, relayed above 64 MiB (default: ours,
                       copied or relayed, never our fd itself)
  --stdout FILE        program's stdout (default: relayed to ours)
  --stderr FILE        program's stderr (default: relayed to ours)
  --bind SRC[:DST][:rw]  bind a host path, read-only unless :rw (repeatable)
  --env K=V            set a variable (K alone copies ours); the environment is clean otherwise
  --cwd DIR            working directory inside
  --seccomp POLICY     seccomp policy instead of the profile's: a built-in name, a path, or none
  --require-cgroup     refuse to run without a delegated cgroup v2 (instead of rlimits + sampling)
  --keep-changes DIR   image roots: keep the run's writable layer in DIR (see sandbox diff)
  --quiet              no verdict line for limit verdicts (XX, and any verdict the program's output
                       imitates, are still printed)

DUR: 1.5, 1.5s, 500ms, 2m, 1h (at most 500h).  SIZE: 65536, 64K, 64M, 64MiB, 1G (at most 4194304T).
exit status: the program's; 128+N if it died of signal N; 125 sandbox error (bad profile,
bad option, a setup step failed: nothing ran); 126 program not executable; 127 program or script
not found.  The verdict line is the last line on stderr, after all of the program's output.
"""

LIMIT_OPTIONS = {"--time": "cpu_time", "--cpu-time": "cpu_time", "--wall-time": "wall_time",
                 "--memory": "memory", "--processes": "processes", "--output-limit": "output",
                 "--file-size": "file_size", "--open-files": "open_files", "--stack": "stack",
                 "--address-space": "address_space"}
VALUE_OPTIONS = ({"--profile", "--report", "--stdin", "--stdout", "--stderr", "--bind", "--env", "--cwd", "--seccomp",
                  "--output", "--keep-changes"} | set(LIMIT_OPTIONS))
FLAG_OPTIONS = {"--explain", "--quiet", "--require-cgroup"}
PATH_OPTIONS = {"--profile", "--report", "--stdin", "--stdout", "--stderr", "--seccomp", "--output", "--keep-changes"}
QUIET_STATUSES = ("OK", "RE")


def _parse_run(argv):
    opts = {"binds": [], "env": {}, "limits": {}}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            opts["argv"] = argv[i + 1:]
            break
        if not arg.startswith("--") or arg == "-":
            opts["script"], opts["args"] = arg, argv[i + 1:]
            break
        name, eq, value = arg.partition("=")
        if name in FLAG_OPTIONS:
            if eq:
                raise UsageError(f"{name} takes no value", name, f"write {name} alone")
            opts[name[2:].replace("-", "_")] = True
            i += 1
            continue
        if name not in VALUE_OPTIONS:
            raise UsageError(f"unknown option {name if len(name) <= 60 else name[:59] + '…'}", "sandbox run",
                             did_you_mean(name, sorted(VALUE_OPTIONS | FLAG_OPTIONS), "see sandbox --help", quote=False))
        if not eq:
            if i + 1 >= len(argv):
                raise UsageError(f"{name} needs a value", name, "see sandbox --help")
            value = argv[i + 1]
            i += 1
        i += 1
        if name in LIMIT_OPTIONS:
            opts["limits"][LIMIT_OPTIONS[name]] = value
        elif name == "--bind":
            opts["binds"].append(value)
        elif name == "--env":
            key, has_value, val = value.partition("=")
            if not key or "\0" in value:
                raise UsageError(f"{shorten(value, 60)} is not K=V" + (" (it has a NUL)" if key else ""), "--env",
                                 "write --env NAME=value or --env NAME")
            opts["env"][key] = val if has_value else os.environ.get(key)
        else:
            if not value and name in PATH_OPTIONS:
                raise UsageError(f"{name} needs a path, got ''", name, f"give {name} a path, or leave the option out")
            opts[name[2:].replace("-", "_")] = value
    if "profile" not in opts:
        raise UsageError("no profile given", "sandbox run", "add --profile NAME (see: sandbox profiles) or --profile FILE.yaml")
    if "argv" in opts and not opts["argv"]:
        raise UsageError("nothing after --", "sandbox run", "write -- PROGRAM [ARGS...]")
    if "argv" not in opts and "script" not in opts:
        raise UsageError("nothing to run", "sandbox run", "give a SCRIPT, or -- PROGRAM [ARGS...]")
    return opts


def _limit_error(e):
    # Limits from the command line are validated by the profile schema; say which option it was.
    where = e.where or ""
    if where.startswith("limits."):
        key = where.split(".", 1)[1]
        option = next(o for o, k in LIMIT_OPTIONS.items() if k == key)
        e.where = option
    return e


def _request(opts):
    return dict(script=opts.get("script"), args=opts.get("args", ()), limits=opts["limits"], binds=opts["binds"],
                env=opts["env"], cwd=opts.get("cwd"))


def cmd_run(argv):
    from . import plancache
    opts = _parse_run(argv)
    if "output" in opts:
        raise UsageError("--output belongs to sandbox learn", "--output", "use --stdout FILE for the program's output")
    request = dict(profile=opts["profile"], argv=opts.get("argv"), seccomp=opts.get("seccomp"),
                   require_cgroup=opts.get("require_cgroup", False), keep_changes=opts.get("keep_changes"),
                   **_request(opts))
    kept = None if opts.get("explain") else plancache.lookup(request)
    plan, confirm = kept or (_build(request), None)
    if opts.get("explain"):
        _print(plan.explain())
        return 0
    if "report" in opts:
        _check_report(opts["report"])
    result, out, err = _execute(plan, opts, confirm)
    if result is None:          # the host changed since the plan was kept: a new plan, as if there were none
        result, out, err = _execute(_build(request), opts, None)
    # From here on the sandbox is gone and its output relayed: what we write comes after all of it.
    from .lookout import final_line, must_print
    for name, sink in (("stdout", out), ("stderr", err)):
        if getattr(sink, "dropped", 0):
            from .units import human_size
            _say(f"sandbox: {name}: {human_size(sink.dropped)} of the program's output not delivered: "
                 f"the terminal took nothing for {sink.idle:g} s\n")
    reported = "report" not in opts or _write_report(result, opts["report"])
    lookouts = [s.watch for s in (out, err) if getattr(s, "watch", None) is not None]
    if (result.status == "XX" or must_print(lookouts)
            or (result.status not in QUIET_STATUSES and not opts.get("quiet"))):
        _say(final_line(f"sandbox: {result.status}: {result.message}", lookouts))
    return result.exit_status if reported else EXIT_SANDBOX


def _build(request):
    from . import plancache, runner
    plancache.record()
    plan = None
    try:
        plan = runner.prepare(**request)
    except SandboxError as e:
        raise _limit_error(e) from None
    finally:
        plancache.store(request, plan)
    return plan


def _execute(plan, opts, confirm):
    """(result, stdout target, stderr target); result None when `confirm` said no (runner.execute)."""
    from . import runner
    out, err = _relay("stdout", 1, opts), _relay("stderr", 2, opts)
    _collect_from_here()
    return runner.execute(plan, stdin=_stdin(opts), stdout=out, stderr=err, confirm=confirm), out, err


def _collect_from_here():
    """The start-up (imports, the plan) allocates thousands of objects that live until
    the process ends; the garbage collector, scanning them again and again, cost up to a
    millisecond of a cold `sandbox run`.  entry() turns it off for the start-up; from the
    run on it works again, on what is allocated after this point only (gc.freeze)."""
    import gc
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _stdin(opts):
    # Our own stdin may be the caller's terminal, or a pipe their shell shares: relayed, never handed over.
    from .stdio import Shared
    return opts["stdin"] if "stdin" in opts else Shared(0)


def _relay(name, fd, opts):
    """The CLI's own fd as a stream's target, watched by a Lookout (see lookout.py); a file
    given with --stdout/--stderr is opened by the runner and needs no watching."""
    if name in opts:
        return opts[name]
    from .lookout import Lookout
    from .stdio import fd_sink
    sink = fd_sink(fd)
    try:
        shares = (sink.tty and os.isatty(2)) or os.path.samestat(os.fstat(fd), os.fstat(2))
    except OSError:
        shares = False
    sink.watch = Lookout(shares=shares)
    return sink


def _say(text):
    """Write to our stderr as the relay writes: a terminal that takes nothing (output stopped)
    loses the text after stdio.TERMINAL_IDLE rather than hang the CLI."""
    from .stdio import fd_sink
    sys.stderr.flush()
    sink = fd_sink(2)
    sink.feed(text.encode("utf-8", "backslashreplace"))
    sink.drain()
    sink.close()


def _check_report(path):
    """--report is checked before anything runs: exit 125 must mean that nothing ran."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        problem = "it is a directory"
    elif os.path.exists(path):
        problem = None if os.access(path, os.W_OK) else "the file is not writable"
    elif not os.path.isdir(parent):
        problem = f"the directory {parent} does not exist"
    else:
        problem = None if os.access(parent, os.W_OK | os.X_OK) else f"the directory {parent} is not writable"
    if problem:
        raise UsageError(f"cannot write the report to {path}: {problem}", "--report",
                         "choose a file in an existing, writable directory")


def _write_report(result, path):
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(result.to_json())
        return True
    except OSError as e:
        print(f"sandbox: cannot write the report to {path}: {e.strerror}", file=sys.stderr)
        return False


def cmd_learn(argv):
    from . import learn
    opts = _parse_run(argv)
    if "output" not in opts:
        raise UsageError("no --output given", "sandbox learn", "add --output POLICY.yaml: the learned allow-list goes there")
    for option in ("seccomp", "explain"):
        if option in opts:
            raise UsageError(f"--{option} does not apply to sandbox learn", f"--{option}", f"drop --{option}")
    try:
        if "report" in opts:
            _check_report(opts["report"])
        result, names, foreign = learn.learn(opts["profile"], opts["output"], opts.get("argv"),
                                             io=(_stdin(opts), opts.get("stdout", 1), opts.get("stderr", 2)),
                                             **_request(opts))
    except SandboxError as e:
        raise _limit_error(e) from None
    if "report" in opts:
        _write_report(result, opts["report"])
    print(f"sandbox: learned {len(names)} system calls from a run that ended {result.status} "
          f"({result.message}); allow-list written to {opts['output']}", file=sys.stderr)
    if foreign:
        print(f"sandbox: the run also made {len(foreign)} calls of a foreign ABI, which no policy allows: "
              + ", ".join(f"{c['arch']} {c['name'] or c['number']}" for c in foreign), file=sys.stderr)
    if result.status != "OK":
        print("sandbox: the run did not end OK, so the policy may lack what a full run needs", file=sys.stderr)
        return 1
    return 0


def cmd_image(argv):
    from . import image
    store = image.Store()
    sub, args = (argv[0], argv[1:]) if argv else ("", [])
    if sub == "import" and len(args) == 2:
        record = store.import_(args[0], args[1])
        total = sum(record["sizes"].values())
        print(f"{args[0]}: {record['format']} image, {len(record['layers'])} layers, {total} bytes unpacked, "
              f"in {store.root}")
        return 0
    if sub == "ls" and not args:
        for name in store.names():
            rec = store.get(name)
            print(f"{name:<24} {len(rec['layers']):>3} layers {sum(rec['sizes'].values()):>14} bytes  {rec['format']}")
        return 0
    if sub == "rm" and len(args) == 1:
        removed = store.remove(args[0])
        print(f"{args[0]}: removed; {len(removed)} layers no image used were deleted")
        return 0
    if sub == "inspect" and len(args) == 1:
        import json
        rec = store.get(args[0], "sandbox image inspect")
        rec["layers"] = [{"diff_id": "sha256:" + d, "size": rec["sizes"][d]} for d in rec["layers"]]
        del rec["sizes"]
        print(json.dumps(rec, indent=2))
        return 0
    if sub == "build" and args:
        return _image_build(store, args)
    raise UsageError(f"unknown or incomplete image command: {' '.join(argv) or '(none)'}", "sandbox image",
                     "use: image import NAME FILE | image build NAME --debian SUITE | image ls | image inspect NAME "
                     "| image rm NAME")


def _image_build(store, args):
    import shutil
    import subprocess
    import tempfile
    name, opts, i = args[0], {}, 1
    while i < len(args):
        if args[i] not in ("--debian", "--packages", "--mirror") or i + 1 >= len(args):
            raise UsageError(f"unexpected {shorten(args[i], 60)}", "sandbox image build",
                             "use: sandbox image build NAME --debian SUITE [--packages P1,P2] [--mirror URL]")
        opts[args[i][2:]] = args[i + 1]
        i += 2
    from .image import check_name
    check_name(name, "sandbox image build")                 # before a minute of mmdebstrap, not after
    if "debian" not in opts:
        raise UsageError("no --debian SUITE given", "sandbox image build", "add e.g. --debian bookworm")
    if not shutil.which("mmdebstrap"):
        raise UsageError("mmdebstrap is not installed", "sandbox image build",
                         "apt install mmdebstrap uidmap (its unshare mode also needs /etc/subuid and /etc/subgid "
                         "ranges for you)")
    with tempfile.TemporaryDirectory(prefix="sandbox-build-") as tmp:
        out = os.path.join(tmp, "rootfs.tar")
        cmd = ["mmdebstrap", "--mode=unshare", "--variant=minbase", "--quiet"]
        if opts.get("packages"):
            cmd.append("--include=" + opts["packages"])
        cmd += [opts["debian"], out] + ([opts["mirror"]] if "mirror" in opts else [])
        print(f"sandbox: {' '.join(cmd)}", file=sys.stderr)
        if subprocess.run(cmd).returncode != 0:
            raise UsageError("mmdebstrap failed (its output is above)", "sandbox image build",
                             "check the suite, the packages and the mirror; unshare mode needs subordinate ids "
                             "(usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER)")
        record = store.import_(name, out, "sandbox image build")
    print(f"{name}: Debian {opts['debian']} image, {sum(record['sizes'].values())} bytes, in {store.root}")
    return 0


def cmd_diff(argv):
    from . import rootfs
    if len(argv) != 1:
        raise UsageError("diff takes one directory", "sandbox diff", "use: sandbox diff DIR (from --keep-changes DIR)")
    for kind, path in rootfs.diff(argv[0]):
        _print(f"{kind} {path}")
    return 0


def cmd_rm_changes(argv):
    from . import rootfs
    if len(argv) != 1:
        raise UsageError("rm-changes takes one directory", "sandbox rm-changes",
                         "use: sandbox rm-changes DIR (from --keep-changes DIR)")
    rootfs.remove_kept(argv[0])
    return 0


def cmd_profiles(argv):
    from . import profile as profile_mod
    if not argv:
        for name in profile_mod.builtin_names():
            print(f"{name:<12} {profile_mod.description(name)}")
        return 0
    if argv[0] == "show" and len(argv) == 2:
        import yaml
        p = profile_mod.load(argv[1], where="sandbox profiles show")
        chain = " <- ".join(os.path.basename(c) for c in p.chain)
        sys.stdout.write(f"# {p.name}: resolved from {chain}\n")
        sys.stdout.write(yaml.safe_dump(p.data, sort_keys=False, default_flow_style=False))
        return 0
    if argv == ["keys"]:
        from . import schema
        sys.stdout.write(schema.text())
        return 0
    raise UsageError(f"unknown arguments: {shorten(' '.join(argv), 60)}", "sandbox profiles",
                     "use: sandbox profiles, sandbox profiles show NAME, or sandbox profiles keys")


def cmd_check(argv):
    from . import hostids, profile as profile_mod, runner
    if len(argv) != 1:
        raise UsageError("check takes one profile file", "sandbox check", "use: sandbox check FILE.yaml")
    p = profile_mod.load(argv[0], where="sandbox check")
    # The very plan a run of a script builds, host checks included, and its encoding for the launcher
    # (whose bounds it checks): one path, so check refuses whatever a run would.  The profile file stands
    # in for the script; any existing file would do.
    plan = runner.prepare(p, script=p.path)
    plan.encode(f"{plan.cgroup.base}/run-check" if plan.cgroup else None,
                hostids.id_range()[0] if plan.host_ids else None)
    _print(f"{argv[0]}: ok ({' <- '.join(os.path.basename(c) for c in p.chain)})")
    return 0


def _print(text, file=None):
    """A line for stdout (or `file`), whatever its encoding: bytes that are not UTF-8 (host file names
    and arguments arrive as surrogate escapes) are written as \\xNN, never an encoding error."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:                          # a lone surrogate that is no escaped byte
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    file = file or sys.stdout
    encoding = getattr(file, "encoding", None) or "utf-8"
    print(text.encode(encoding, "backslashreplace").decode(encoding), file=file)


def cmd_doctor(argv):
    from . import doctor
    return doctor.main(argv)


def _service_command(command, module, needs):
    """`sandbox serve` / `sandbox worker`: the service extra's modules are imported only here,
    and one that is missing is a clear error saying how to get it."""
    import importlib
    try:
        for name in needs:
            importlib.import_module(name)
        entry = importlib.import_module(f"sandbox.service.{module}")
    except ImportError as e:
        raise UsageError(f"sandbox {command} needs the service extra ({e.name} is not installed)",
                         f"sandbox {command}", "pip install 'sandbox[service]'") from None
    return entry.main


def _serve(argv):
    return _service_command("serve", "cli", ("fastapi", "uvicorn", "psutil"))(argv)


def cmd_grade(argv):
    from .ci import grade       # GitHub Classroom autograding: sandbox/ci/grade.py (sandbox grade --help)
    return grade.main(argv)


def _worker(argv):
    # the distributed judge's worker: the extra's Dramatiq, redis and psycopg too
    return _service_command("worker", "worker", ("dramatiq", "redis", "psycopg", "psutil"))(argv)


COMMANDS = {"run": cmd_run, "learn": cmd_learn, "profiles": cmd_profiles, "check": cmd_check, "image": cmd_image,
            "serve": _serve, "worker": _worker,
            "diff": cmd_diff, "rm-changes": cmd_rm_changes, "doctor": cmd_doctor, "grade": cmd_grade}


def entry():
    """The `sandbox` command (bin/sandbox).  After `sandbox run`, whose child processes are all
    reaped and whose output is written, the process ends without the interpreter's teardown:
    freeing every module and object costs more than a millisecond and changes nothing then."""
    if sys.argv[1:2] == ["run"]:
        import gc
        gc.disable()            # until the run starts (cmd_run): see _collect_from_here
    status = main()
    if sys.argv[1:2] == ["run"]:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (BrokenPipeError, ValueError):
            pass
        os._exit(status)
    return status


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv or argv[0] in ("-h", "--help", "help"):
            sys.stdout.write(USAGE)
            return 0 if argv else EXIT_SANDBOX
        if argv[0] == "--version":
            from .version import __version__
            print(f"sandbox {__version__}")
            return 0
        command = COMMANDS.get(argv[0])
        if command is None:
            raise UsageError(f"unknown command {shorten(argv[0], 60)}", "sandbox", "commands: run, learn, image, diff, profiles, check, doctor, serve, worker, grade (see sandbox --help)")
        status = command(argv[1:])
        sys.stdout.flush()          # here, so that a reader gone away is caught below, not at exit
        return status
    except SandboxError as e:
        _print(f"sandbox: error: {e}", sys.stderr)       # a path in it may hold non-UTF-8 bytes
        return e.exit_code
    except KeyboardInterrupt:
        print("sandbox: interrupted; the sandbox was killed", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Our reader went away (`sandbox profiles | head -1`): stop as a shell tool does, quietly,
        # with SIGPIPE's status, and keep the interpreter's final flush from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except Exception as e:   # a bug of ours: say so plainly, traceback only on request
        if os.environ.get("SANDBOX_DEBUG"):
            raise
        print(f"sandbox: internal error: {type(e).__name__}: {e}\n"
              "  please report it, with SANDBOX_DEBUG=1 set for a traceback", file=sys.stderr)
        return EXIT_SANDBOX

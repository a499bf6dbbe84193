"""The language table (profiles/languages.yaml): Judge0 ids -> compile and run profiles.

Loaded once at start.  Each entry is checked on this host the way a compile
would be checked (the compiler in the compile profile's PATH, the runtime in
the run profile's): a language whose toolchain is missing is not offered, and
GET /languages/all says why, instead of every submission failing later with
an Internal Error.
"""
import os
import shlex

from ..errors import ProfileError, SandboxError, UsageError

KEYS = {"id": int, "name": str, "source": str, "compile": str, "artifact": str, "run": dict, "compiled": bool, "aliases": list, "multi_file": bool}


class Language:
    __slots__ = ("id", "name", "source", "compile_profile", "artifact", "run_profile", "run_argv", "compiled",
                 "unavailable", "compile_cmd", "aliases", "multi_file")

    def __init__(self, entry, where):
        self.id, self.name, self.source = entry["id"], entry["name"], entry["source"]
        self.compile_profile, self.artifact = entry["compile"], entry["artifact"]
        self.compiled = entry.get("compiled", True)
        self.aliases = [str(a) for a in entry.get("aliases", [])]
        self.multi_file = entry.get("multi_file", False)
        run = entry["run"]
        if set(run) != {"profile", "argv"} or not isinstance(run["argv"], list) or not run["argv"]:
            raise UsageError("run must be {profile: NAME, argv: [PROGRAM, ...]}", f"{where}.run",
                             "see the comments at the top of profiles/languages.yaml")
        self.run_profile, self.run_argv = run["profile"], [str(a) for a in run["argv"]]
        self.unavailable = None
        self.compile_cmd = None

    def check(self):
        """Whether this host can compile and run it; the reason when not."""
        from .. import profile as profile_mod
        from ..plan import check_interpreter, environment, script_argv
        try:
            compile_profile = profile_mod.load(self.compile_profile, where=f"language {self.id}: compile")
            check_interpreter(compile_profile, environment(compile_profile))
            self.compile_cmd = shlex.join(script_argv(compile_profile, self.source))
            run_profile = profile_mod.load(self.run_profile, where=f"language {self.id}: run")
            program = self.run_argv[0]
            if not program.startswith("/box/"):
                path = environment(run_profile).get("PATH", "/usr/bin:/bin")
                if not any(os.access(os.path.join(d, program), os.X_OK) for d in path.split(":")) \
                        and not (program.startswith("/") and os.access(program, os.X_OK)):
                    raise ProfileError(f"{program} is not present on this host (searched PATH={path})",
                                       f"language {self.id}: run.argv", f"install {program}")
        except SandboxError as e:
            self.unavailable = e.what

    def run_cmd(self):
        return shlex.join(self.run_argv)

    def argv(self, memory_kb, args=()):
        """The run argv for one submission: its memory limit where the runtime needs it (the JVM
        sizes its heap from the machine, not from a limit it cannot see), its own arguments last."""
        memory_mb = str(max(1, memory_kb // 1024))
        return [a.replace("{memory_mb}", memory_mb) for a in self.run_argv] + list(args)


def default_path():
    from ..profile import builtin_dir
    return os.path.join(builtin_dir(), "languages.yaml")


def load(path=None):
    """{id: Language} from the table, every entry checked; UsageError naming the entry if malformed."""
    import yaml
    path = path or default_path()
    where = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            entries = yaml.safe_load(f)
    except OSError as e:
        raise UsageError(f"cannot read the language table {path}: {e.strerror}", "--languages",
                         "give an existing YAML file (see profiles/languages.yaml)") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path} is not valid YAML: {e}", "--languages", "fix the YAML syntax") from None
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{path} must be a list of languages", "--languages", "see profiles/languages.yaml")
    table = {}
    for i, entry in enumerate(entries):
        at = f"{where}: [{i}]"
        if not isinstance(entry, dict):
            raise UsageError("each language is a mapping", at, "see profiles/languages.yaml")
        for key, kind in KEYS.items():
            if key in ("compiled", "aliases", "multi_file") and key not in entry:
                continue
            if key not in entry:
                raise UsageError(f"missing key {key!r}", at, "see profiles/languages.yaml")
            if not isinstance(entry[key], kind) or (kind is int and isinstance(entry[key], bool)):
                raise UsageError(f"{key} must be {kind.__name__}", f"{at}.{key}", "see profiles/languages.yaml")
        unknown = set(entry) - set(KEYS)
        if unknown:
            from ..errors import did_you_mean
            key = sorted(unknown)[0]
            raise UsageError(f"unknown key {key!r}", at, did_you_mean(key, KEYS, "see profiles/languages.yaml"))
        if entry["id"] in table:
            raise UsageError(f"language id {entry['id']} appears twice", at, "give each language its own id")
        lang = Language(entry, at)
        lang.check()
        table[lang.id] = lang
    return table

"""One submission, start to end: compile once, run, measure.  No HTTP, no SQL here.

Built on the public judging API: the compile is a `sandbox.run` of the
language's compile profile with the source (and any additional files) put in
/box and the artifact read back; the artifact is a `judge.Artifact`, bound
read-only into each run from one prepared plan.  (judge.compile does the same
but takes no additional files.)
"""
import os
import shutil
import tempfile

import sandbox
from sandbox import judge

WORK = "/box"
ARTIFACT_MAX = 256 << 20


class Workspace:
    """A submission's scratch on the host: the unpacked additional files.  Removed by close()."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="submission-")
        os.chmod(self.dir, 0o755)
        self.files, self.tops = [], []

    @property
    def extra(self):
        return os.path.join(self.dir, "files")

    def compile_inputs(self):
        """Each file where the compile finds it: copied into its working directory."""
        return {f"{WORK}/{rel}": os.path.join(self.extra, rel) for rel in self.files}

    def run_binds(self):
        """Each top-level entry bound read-only into /box (a directory whole)."""
        return {f"{WORK}/{top}": os.path.join(self.extra, top) for top in self.tops}

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def compile(lang, source, memory_kb, options=(), args=(), workspace=None):
    """Compile `source` (bytes) for `lang` (languages.Language).  Returns (Artifact, Result),
    or (None, Result) when it did not compile; the Artifact runs lang's argv with `args`."""
    from sandbox.plan import script_argv
    profile = sandbox.load_profile(lang.compile_profile)
    argv = script_argv(profile, lang.source) + list(options)
    files_in = {f"{WORK}/{lang.source}": source}
    if workspace is not None:
        files_in.update(workspace.compile_inputs())
    result = sandbox.run(profile, argv, files_in=files_in, files_out=[f"{WORK}/{lang.artifact}"],
                         files_out_max=ARTIFACT_MAX)
    produced = (result.files or {}).get(f"{WORK}/{lang.artifact}")
    if result.status != "OK" or produced is None:
        return None, result
    run_lang = judge.Language(str(lang.id), lang.compile_profile, lang.run_profile, lang.source, lang.artifact,
                              lang.argv(memory_kb, args))
    return judge.Artifact(run_lang, produced), result


def run(artifact, stdin, limits, merge_stderr=False, workspace=None):
    """One run of a compiled artifact.  With merge_stderr, both streams go to one file in the order
    written (Judge0's redirect_stderr_to_stdout) and Result.stdout holds it."""
    plan = artifact.plan(limits, workspace.run_binds() if workspace else None)
    if not merge_stderr:
        return sandbox.execute(plan, stdin=stdin)
    fd = os.memfd_create("merged-output", os.MFD_CLOEXEC)
    try:
        result = sandbox.execute(plan, stdin=stdin, stdout=fd, stderr=fd)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        result.stdout, result.stderr = b"".join(chunks), b""
        return result
    finally:
        os.close(fd)

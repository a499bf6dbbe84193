"""judge-strict against real solutions in C, C++ and Python 3.11, run in the judge's run
profiles (c-run, cpp-run, py311-run): every program a judge accepts is OK, crashes are SG with
the signal named, memory is MLE, threads run and are charged, and what stays forbidden
(processes, namespaces, init, other pids' limits) is still SYS, named."""
import os
import shutil
import subprocess
import tempfile

import pytest

from test_seccomp import PRELUDE     # raw system calls from Python, as there

SUM_C = r"""
#include <stdio.h>
int main(void) { long a, b; if (scanf("%ld %ld", &a, &b) != 2) return 1; printf("%ld\n", a + b); return 0; }
"""
# line by line with fgets, 8 MB of output, recursion 200000 deep (the profile's 64 MiB stack)
LINES_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static long depth(long n) { volatile char pad[64]; pad[0] = (char)n; return n ? depth(n - 1) + 1 + pad[0] - (char)n : 0; }
int main(void) {
    char line[256]; long total = 0;
    while (fgets(line, sizeof line, stdin)) { char *p = line, *end; for (;;) { long v = strtol(p, &end, 10); if (end == p) break; total += v; p = end; } }
    char x[81]; memset(x, 'x', 79); x[79] = '\n'; x[80] = 0;
    for (int i = 0; i < 100000; i++) fputs(x, stdout);
    printf("%ld %ld\n", total, depth(200000));
    return 0;
}
"""
RAISE_C = "#include <signal.h>\nint main(void) { raise(SIGFPE); return 0; }\n"
ABORT_C = "#include <stdlib.h>\nint main(void) { abort(); }\n"
IOSTREAM_CPP = r"""
#include <algorithm>
#include <iostream>
#include <map>
#include <string>
#include <vector>
int main() {
    std::ios::sync_with_stdio(false); std::cin.tie(nullptr);
    std::vector<long> v; std::string line; std::map<long, int> seen;
    while (std::getline(std::cin, line)) { size_t i = 0; while (i < line.size()) { size_t k; long x = std::stol(line.substr(i), &k); v.push_back(x); seen[x]++; i += k; while (i < line.size() && line[i] == ' ') i++; } }
    std::sort(v.begin(), v.end());
    std::string big(79, 'x'); for (int i = 0; i < 100000; i++) std::cout << big << '\n';
    std::cout << v[0] + v[1] << ' ' << seen.size() << std::endl;
}
"""
THROW_CPP = '#include <stdexcept>\nint main() { throw std::runtime_error("uncaught"); }\n'
ASSERT_CPP = ("#include <cassert>\n#include <cstdio>\nint main() { long a, b; if (std::scanf(\"%ld %ld\", &a, &b) != 2)"
              " return 1; assert(a + b < 0); std::printf(\"%ld\\n\", a + b); }\n")
# the usual C++ MLE: allocate (and fill) until it throws, uncaught
BAD_ALLOC_CPP = "#include <vector>\nint main() { std::vector<std::vector<char>> v; for (;;) v.emplace_back(1 << 20, 1); }\n"
# four threads, each spending 0.3 s of its own CPU: bounded by the thread's clock, not by a count
THREADS_CPP = r"""
#include <cstdio>
#include <ctime>
#include <thread>
#include <vector>
static double clock_of(clockid_t c) { timespec ts; clock_gettime(c, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
int main() {
    long a, b;
    if (std::scanf("%ld %ld", &a, &b) != 2) return 1;
    double w0 = clock_of(CLOCK_MONOTONIC);
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; i++) ts.emplace_back([] { while (clock_of(CLOCK_THREAD_CPUTIME_ID) < 0.3) {} });
    for (auto &t : ts) t.join();
    std::printf("%ld\n", a + b);
    std::fprintf(stderr, "%f %f\n", clock_of(CLOCK_PROCESS_CPUTIME_ID), clock_of(CLOCK_MONOTONIC) - w0);
}
"""
# eight threads that wait, the main one reporting each start: the processes limit stops the creation
MANY_THREADS_CPP = r"""
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>
int main() {
    std::vector<std::thread> ts;
    for (int i = 0; i < 8; i++) {
        ts.emplace_back([] { std::this_thread::sleep_for(std::chrono::milliseconds(500)); });
        std::printf("started %d\n", i + 1); std::fflush(stdout);
    }
    for (auto &t : ts) t.join();
}
"""
# clone for a thread with CLONE_NEWUSER: what no allow-list here may let through
NS_CLONE_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) { printf("before\n"); fflush(stdout); long r = syscall(SYS_clone, 0x3d0f00L | 0x10000000L, 0L, 0L, 0L, 0L); printf("after %ld\n", r); return 0; }
"""
STDLIB_PY = r"""
import bisect, collections, decimal, fractions, functools, heapq, itertools, math, random, re, sys, threading, time

def solve():
    data = sys.stdin.buffer.read().split()              # all of stdin at once
    a, b = int(data[0]), int(data[1])
    h = [5, 1, 4]; heapq.heapify(h)
    assert heapq.heappop(h) == 1
    assert bisect.bisect_left([1, 3, 5], 4) == 2
    assert collections.Counter("abca")["a"] == 2 and collections.deque([1, 2]).popleft() == 1
    assert fractions.Fraction(1, 3) + fractions.Fraction(1, 6) == fractions.Fraction(1, 2)
    decimal.getcontext().prec = 50
    assert str(decimal.Decimal(2).sqrt()).startswith("1.4142135623730950488")
    assert functools.reduce(lambda x, y: x * y, range(1, 6)) == 120 and functools.lru_cache(None)(abs)(-3) == 3
    assert len(list(itertools.permutations(range(4)))) == 24 and math.comb(10, 3) == 120 and math.isqrt(99) == 9
    assert re.fullmatch(r"(\d+)-(\d+)", "12-34").group(2) == "34"
    random.seed(1); random.shuffle(h); assert 1 <= random.randint(1, 6) <= 6
    t0 = time.perf_counter(); time.sleep(0.001); assert time.time() > 0 and time.perf_counter() > t0
    sys.setrecursionlimit(10 ** 6)
    def depth(n):
        return 0 if n == 0 else depth(n - 1) + 1
    assert depth(200_000) == 200_000                     # deep recursion, on the big thread stack below
    threading.stack_size(0)                              # workers with the default stack: 4 x 256 MiB would not fit
    workers = [threading.Thread(target=lambda: sum(range(1000))) for _ in range(3)]
    for w in workers: w.start()
    for w in workers: w.join()
    print(a + b)

threading.stack_size(256 << 20)
t = threading.Thread(target=solve)
t.start(); t.join()
"""
LINES_PY = r"""
import resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
resource.setrlimit(resource.RLIMIT_STACK, (hard, hard))   # prlimit64 on itself
total = 0
for line in sys.stdin:                                    # line by line
    total += sum(map(int, line.split()))
sys.stdout.write(("x" * 79 + "\n") * 100_000)             # 8 MB of output
print(total)
"""

BIG = ("x" * 79 + "\n") * 100_000

# name: (language, source, extra options, status, signal name, stdout (None: not checked))
CASES = {
    "c_sum": ("c", SUM_C, [], "OK", None, "3\n"),
    "c_lines_output_recursion": ("c", LINES_C, [], "OK", None, BIG + "3 200000\n"),
    "c_raise_sigfpe": ("c", RAISE_C, [], "SG", "SIGFPE", ""),
    "c_abort": ("c", ABORT_C, [], "SG", "SIGABRT", ""),
    "cpp_iostream_lines_output": ("cpp", IOSTREAM_CPP, [], "OK", None, BIG + "3 2\n"),
    "cpp_uncaught_exception": ("cpp", THROW_CPP, [], "SG", "SIGABRT", ""),
    "cpp_failed_assert": ("cpp", ASSERT_CPP, [], "SG", "SIGABRT", ""),
    "cpp_bad_alloc": ("cpp", BAD_ALLOC_CPP, ["--memory", "64M"], "MLE", None, None),
    "cpp_threads": ("cpp", THREADS_CPP, [], "OK", None, "3\n"),
    "py_stdlib_threads_recursion": ("py", STDLIB_PY, [], "OK", None, "3\n"),
    "py_lines_output": ("py", LINES_PY, [], "OK", None, BIG + "3\n"),
}
RUN_PROFILE = {"c": "c-run", "cpp": "cpp-run", "py": "py311-run"}


@pytest.fixture(scope="module")
def progs():
    """Every program compiled once, in a directory the test user can read."""
    d = tempfile.mkdtemp(prefix="sandbox-test-judge-strict-")
    os.chmod(d, 0o755)
    built = {}
    sources = dict(CASES)
    sources["many_threads"] = ("cpp", MANY_THREADS_CPP)
    sources["ns_clone"] = ("c", NS_CLONE_C)
    for name, (lang, src, *_) in sources.items():
        if lang == "py":
            path = os.path.join(d, name + ".py")
            with open(path, "w") as f:
                f.write(src)
        else:
            compiler = {"c": "gcc", "cpp": "g++"}[lang]
            assert shutil.which(compiler), f"{compiler} is needed for the judge-strict test programs"
            srcpath = os.path.join(d, name + (".c" if lang == "c" else ".cpp"))
            with open(srcpath, "w") as f:
                f.write(src)
            path = os.path.join(d, name)
            subprocess.run([compiler, "-O2", "-pthread", "-o", path, srcpath], check=True)
        os.chmod(path, 0o755)
        built[name] = path
    with open(os.path.join(d, "in.txt"), "w") as f:
        f.write("1 2\n")
    os.chmod(os.path.join(d, "in.txt"), 0o644)
    yield d, built
    shutil.rmtree(d, ignore_errors=True)


def run(sbx, progs, name, *opts, profile=None, lang=None):
    d, built = progs
    lang = lang or CASES[name][0]
    return sbx.run("run", "--profile", profile or RUN_PROFILE[lang], "--stdin", os.path.join(d, "in.txt"),
                   *opts, built[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_solutions_get_the_judges_verdict(sbx, progs, name):
    lang, _, opts, status, signal, stdout = CASES[name]
    r, rep = run(sbx, progs, name, *opts)
    assert rep["seccomp"] == "judge-strict"
    assert rep["status"] == status, (rep["message"], rep["syscall"], r.stderr[-2000:])
    assert rep["signal_name"] == signal or status == "MLE", rep
    if signal:
        assert f"killed by signal {rep['signal']} ({signal})" in rep["message"]
    if stdout is not None:
        assert r.stdout.decode() == stdout, (r.stdout[-200:], r.stderr[-2000:])
    assert b"Traceback" not in r.stderr, r.stderr[-2000:]         # nor in a thread, whose failure exits 0


def test_every_thread_is_charged(sbx, progs):
    """Four threads of 0.3 s of CPU each: the report holds all 1.2 s (at least what the process's
    own clock says), and when the threads overlapped, CPU time exceeds wall time."""
    r, rep = run(sbx, progs, "cpp_threads")
    assert rep["status"] == "OK" and r.stdout == b"3\n", rep
    inner_cpu, inner_wall = map(float, r.stderr.decode().split()[:2])
    assert rep["cpu_time_s"] >= 4 * 0.3 and rep["cpu_time_s"] >= inner_cpu - 0.01, (rep["cpu_time_s"], inner_cpu)
    assert rep["wall_time_s"] >= inner_wall
    if inner_cpu > rep["wall_time_s"]:    # the threads overlapped (not guaranteed on a loaded machine) ...
        assert rep["cpu_time_s"] > rep["wall_time_s"], rep     # ... and the report says so
    assert rep["processes_peak"] >= 2      # threads count as pids.peak counts them


def test_threads_count_against_the_processes_limit(sbx, progs):
    """--processes 4: the main thread and three more, then thread creation fails with EAGAIN;
    C++ ends with std::system_error (SG SIGABRT), Python with RuntimeError (RE)."""
    r, rep = run(sbx, progs, "many_threads", "--processes", "4", lang="cpp")
    assert r.stdout.decode().split("\n")[:-1] == [f"started {i}" for i in (1, 2, 3)], r.stdout
    assert rep["status"] == "SG" and rep["signal_name"] == "SIGABRT", rep
    assert b"Resource temporarily unavailable" in r.stderr
    code = ("import threading, time\n"
            "for i in range(8):\n"
            "    threading.Thread(target=time.sleep, args=(0.5,)).start(); print('started', i + 1, flush=True)\n")
    r, rep = sbx.run("run", "--profile", "py311-run", "--processes", "4", "--", "python3.11", "-I", "-c", code)
    assert r.stdout.decode().split("\n")[:-1] == [f"started {i}" for i in (1, 2, 3)], r.stdout
    assert rep["status"] == "RE" and b"can't start new thread" in r.stderr, rep


THREAD_FLAGS = 0x3d0f00             # what glibc's pthread_create passes to clone

# (call that judge-strict kills, the name in the report)
STILL_KILLED = {
    "fork": ("os.fork()", "clone"),
    "clone_thread_with_newuser": (f"call(56, {THREAD_FLAGS} | 0x10000000, 0, 0, 0, 0)", "clone"),
    "clone_thread_with_newnet": (f"call(56, {THREAD_FLAGS} | 0x40000000, 0, 0, 0, 0)", "clone"),
    "clone_without_thread": ("call(56, 0x100 | 0x800 | 17, 0, 0, 0, 0)", "clone"),     # CLONE_VM|SIGHAND, a process
    "kill_init": ("os.kill(1, 9)", "kill"),
    "kill_init_high_bits": ("call(62, 1 | 1 << 32, 9)", "kill"),                          # the kernel reads pid 1
    "tgkill_init": ("call(234, 1, 1, 15)", "tgkill"),
    "sigqueue_init": ("call(129, 1, 15, ctypes.addressof(ctypes.create_string_buffer(128)))", "rt_sigqueueinfo"),
    "prlimit_init": ("call(302, 1, 7, 0, ctypes.addressof(ctypes.create_string_buffer(16)))", "prlimit64"),
    "prlimit_other_pid": ("call(302, os.getpid(), 7, 0, ctypes.addressof(ctypes.create_string_buffer(16)))",
                          "prlimit64"),
}


@pytest.mark.parametrize("case", sorted(STILL_KILLED))
def test_what_stays_forbidden_is_killed_and_named(sbx, case):
    code, name = STILL_KILLED[case]
    r, rep = sbx.run("run", "--profile", "py311-run", "--", "python3.11", "-I", "-c", PRELUDE + code + "\nprint('after')")
    assert r.stdout == b"before\n", (r.stdout, r.stderr)
    assert rep["status"] == "SYS" and rep["syscall"]["name"] == name, rep


def test_signals_between_the_programs_own_threads_and_itself_work(sbx):
    code = ("import signal, threading\n"
            "got = []\n"
            "signal.signal(signal.SIGUSR1, lambda *a: got.append('usr1'))\n"
            "os.kill(os.getpid(), signal.SIGUSR1)\n"                              # kill
            "signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)\n"  # tgkill
            "print(got, call(62, 0, 0), call(62, -1, 0))\n")          # its group; kill(-1): every process it may
    r, rep = sbx.run("run", "--profile", "py311-run", "--", "python3.11", "-I", "-c", PRELUDE + code)
    assert rep["status"] == "OK", rep
    # kill(-1) finds no process to signal (ESRCH): the namespace holds only itself and init, which is exempt
    assert r.stdout.decode().splitlines()[1] == "['usr1', 'usr1'] 0 -3"


@pytest.mark.parametrize("policy", ["default", "judge-strict"])
def test_a_forged_sigterm_does_not_end_the_run(sbx, policy):
    """rt_sigqueueinfo lets the caller write si_pid itself: a SIGTERM with si_pid 0, which is what
    the launcher's looks like, sent to init.  The seccomp base layer (in every filter) kills the call
    aimed at pid 1 first; init would ignore it anyway (not SI_USER), a second layer that no program
    can reach to test while the first stands."""
    code = ("import struct\n"
            "info = ctypes.create_string_buffer(struct.pack('iii4xii', 15, 0, -1, 0, 0), 128)\n"   # SI_QUEUE, pid 0
            "print(call(129, 1, 15, ctypes.addressof(info)), flush=True)\n"
            "import time; time.sleep(0.3); print('alive')\n")
    r, rep = sbx.run("run", "--profile", "py311", "--seccomp", policy, "--", "python3.11", "-I", "-c", PRELUDE + code)
    assert r.stdout == b"before\n" and b"alive" not in r.stdout, r.stdout
    assert rep["status"] == "SYS" and rep["syscall"]["name"] == "rt_sigqueueinfo", rep


def test_learned_policy_runs_the_threaded_program(sbx, progs):
    """A policy learned from the 4-thread program lets it run: clone3 (what the learning run
    saw) becomes ENOSYS plus clone without namespace flags, which is what libc then uses."""
    d, built = progs
    policy = os.path.join(sbx.box, "threads.yaml")
    stdin = os.path.join(d, "in.txt")
    r = sbx("learn", "--profile", "native", "--output", policy, "--stdin", stdin, built["cpp_threads"])
    assert r.returncode == 0 and r.stdout == b"3\n", r.stderr
    text = open(policy).read()
    assert "- syscall: clone3\n    action: errno ENOSYS" in text and "      - clone3" not in text, text
    r, rep = sbx.run("run", "--profile", "native", "--seccomp", policy, "--stdin", stdin, built["cpp_threads"])
    assert rep["status"] == "OK" and r.stdout == b"3\n", (rep, r.stderr)
    assert rep["cpu_time_s"] >= 4 * 0.3
    # the learned clone rule still refuses a namespace
    r, rep = sbx.run("run", "--profile", "native", "--seccomp", policy, built["ns_clone"])
    assert r.stdout == b"before\n" and rep["status"] == "SYS" and rep["syscall"]["name"] == "clone", rep

"""Process supervision: one poll loop that relays or captures the program's
output, reads the sandbox's samples, enforces wall time, CPU, memory and
output limits, and kills the sandbox when one trips.

Killing is always the same act: SIGTERM to the launcher, which passes it to
the sandbox's init (it has not reaped init, so the pid cannot have been
reused); init kills and reaps every process of the sandbox, so the CPU of the
whole tree reaches the rusage the launcher reports.  If init does not manage
within 2 s the launcher SIGKILLs it.
"""
import os
import select
import time

from .stdio import CHUNK, POLLERR, POLLHUP, POLLIN, POLLOUT

SIGTERM = 15
PENDING_MAX = 1 << 20     # relay buffer per stream; beyond it the program waits (backpressure)
SETUP_TIMEOUT = 30.0      # seconds from spawn to exec; a healthy setup takes milliseconds


class Outcome:
    """Raw facts of a run; report.py turns them into a verdict."""
    __slots__ = ("setup_error", "wstatus", "killed", "rusage", "init_self", "init_pid",
                 "mem_peak", "mem_at_peak", "procs_peak", "cpu_vanished_us", "samples", "tampered",
                 "degraded", "t_spawn", "t_exec", "t_end",
                 "out_bytes", "err_bytes", "truncated", "interrupted", "violation", "logged")

    def __init__(self):
        self.setup_error = None          # (op index, errno, text)
        self.wstatus = None              # the program's wait status, from init
        self.killed = None               # which limit made us kill it
        self.rusage = None               # init's tree, from the launcher: utime µs, stime µs, maxrss KiB, nvcsw, nivcsw
        self.init_self = (0, 0)          # init's own user/sys µs, excluded from the program's time
        self.init_pid = None             # init's pid here, from the launcher
        self.mem_peak = 0
        self.mem_at_peak = None          # (processes, sysv_shm, dev_shm) bytes of the sample with the peak
        self.procs_peak = 0
        self.cpu_vanished_us = 0         # CPU of processes the kernel reaped for their parent, as last sampled
        self.samples = 0                 # how many times init sampled the tree
        self.tampered = None             # what the program did to init that made init end the run
        self.degraded = []
        self.t_spawn = self.t_exec = self.t_end = None
        self.out_bytes = self.err_bytes = 0
        self.truncated = False
        self.interrupted = False
        self.violation = None            # (nr, arch, args): a call the seccomp policy kills
        self.logged = []                 # (nr, arch): calls the policy logs, each once


class _Run:
    """State of one supervised run while the loop is going."""

    def __init__(self, launched, limits, cg=None):
        self.launched = launched
        self.cg = cg                     # the run's cgroup: CPU from cpu.stat, memory enforced by the kernel
        self.o = Outcome()
        self.o.t_spawn = launched.t_spawn
        self.cpu_limit_us = None if limits["cpu_time"] is None else limits["cpu_time"] * 1e6
        self.mem_limit, self.out_limit, self.wall = limits["memory"], limits["output"], limits["wall_time"]
        self.err_text = b""
        self.status_text = b""

    def kill(self, reason):
        if self.o.killed is None:
            self.o.killed = reason
            try:
                os.kill(self.launched.pid, SIGTERM)
            except ProcessLookupError:
                pass

    def deadline(self):
        o = self.o
        if o.killed is not None or o.t_end is not None:
            return None, None
        if o.t_exec is None and o.setup_error is None:
            return o.t_spawn + SETUP_TIMEOUT, "setup_timeout"
        if self.wall is not None and o.t_exec is not None:
            return o.t_exec + self.wall, "wall_time"
        return None, None

    def on_err_eof(self):
        # "E <op> <errno> <text>": a step failed.  Nothing at all: the program was exec'd.
        if self.err_text:
            _, op_index, errno_, text = (self.err_text.decode(errors="replace").split("\n")[0].split(" ", 3) + [""])[:4]
            self.o.setup_error = (int(op_index), int(errno_), text)
        elif self.o.t_exec is None:      # init's fork time, when it came first, is more exact
            self.o.t_exec = time.monotonic()

    def on_status(self, data):
        self.status_text += data
        *lines, self.status_text = self.status_text.split(b"\n")
        o = self.o
        for line in lines:
            parts = line.split()
            tag = parts[0] if parts else b""
            if tag == b"S" and len(parts) == 9:
                cpu, mem, procs = int(parts[1]), int(parts[2]), int(parts[3])
                o.init_self = (int(parts[4]), int(parts[5]))
                if mem > o.mem_peak or o.mem_at_peak is None:
                    o.mem_peak, o.mem_at_peak = mem, tuple(int(p) for p in parts[6:9])
                o.procs_peak = max(o.procs_peak, procs)
                if self.cg is not None:
                    # the cgroup counts every process that ever ran in it; init is one of them
                    cpu = self.cg.usage_us() - sum(o.init_self)
                    self.cg.sample()
                limit = self.cpu_limit_us
                if limit is not None and cpu > limit and self.program_cpu_now(cpu) > limit:
                    self.kill("cpu_time")
                elif self.mem_limit is not None and mem > self.mem_limit and self.cg is None:
                    self.kill("memory")
            elif tag == b"X" and len(parts) == 8:
                # init's clock readings are CLOCK_MONOTONIC, the same clock as time.monotonic()
                o.wstatus, o.init_self = int(parts[1]), (int(parts[2]), int(parts[3]))
                o.t_exec, o.t_end = int(parts[4]) / 1e9, int(parts[5]) / 1e9
                o.cpu_vanished_us, o.samples = int(parts[6]), int(parts[7])
            elif tag == b"T" and len(parts) == 2:
                o.tampered = parts[1].decode()
            elif tag == b"L" and len(parts) == 6:
                o.rusage = tuple(int(p) for p in parts[1:])
            elif tag == b"I" and len(parts) == 2:
                o.init_pid = int(parts[1])
            elif tag == b"D" and len(parts) == 2:
                o.degraded.append(parts[1].decode())
            elif tag == b"V" and len(parts) == 9:
                o.violation = (int(parts[1]), int(parts[2]), [int(a) for a in parts[3:]])
            elif tag == b"Y" and len(parts) == 3:
                o.logged.append((int(parts[1]), int(parts[2])))

    def program_cpu_now(self, estimate):
        """The program's CPU (µs) from the cgroup's usage and init's own CPU read
        together now.  The estimate subtracts init's CPU as of its sample, which
        is stale by however far this loop lags behind the status pipe; init's work
        in between would count as the program's, and under load that alone has
        tipped a run over its limit (TLE at 0.45 s of a 0.5 s limit).  So a kill
        is decided on this reading; the estimate only ever errs high, so it
        still says when to look.  Without a cgroup the estimate is init's own
        reading of the tree, already exact."""
        if self.cg is None or self.o.init_pid is None:
            return estimate
        try:
            with open(f"/proc/{self.o.init_pid}/schedstat", "rb") as f:
                init_ns = int(f.read().split()[0])        # sum_exec_runtime, as the cgroup counts
        except (OSError, ValueError, IndexError):
            return estimate
        if not init_ns:                                   # schedstat not kept by this kernel
            return estimate
        return self.cg.usage_us() - init_ns // 1000

    def on_output(self, sink, is_out, data):
        o = self.o
        total = o.out_bytes + o.err_bytes
        if self.out_limit is not None and total + len(data) > self.out_limit:
            data = data[:max(0, self.out_limit - total)]
            o.truncated = True
            self.kill("output")
        if is_out:
            o.out_bytes += len(data)
        else:
            o.err_bytes += len(data)
        sink.feed(data)


def supervise(launched, limits, out_sink, err_sink, cg=None, cancel=None, relay_timeout=None, feed=None):
    run = _Run(launched, limits, cg)
    o = run.o
    streams = {launched.out: (out_sink, True), launched.errout: (err_sink, False)}
    open_fds = {launched.err, launched.status, launched.out, launched.errout}
    try:
        while True:
            relaying = [s for s in (out_sink, err_sink) if s.pending and not s.broken]
            if not open_fds:
                for sink in relaying:            # the sandbox is gone: finish the relay
                    sink.drain(relay_timeout, cancel)
                break
            deadline, reason = run.deadline()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                run.kill(reason)
                continue
            poller = select.poll()
            gone = o.killed is not None or o.t_end is not None
            masks = {}                   # one registration per fd: the same fd may be read and written
            for fd in open_fds:
                sink = streams.get(fd, (None,))[0]
                # A full relay stops reading (backpressure) while the program lives; once it is
                # gone the pipe holds at most its capacity, and its EOF must be seen.
                if sink is None or len(sink.pending) < PENDING_MAX or gone:
                    masks[fd] = POLLIN
            for sink in relaying:
                masks[sink.fd] = masks.get(sink.fd, 0) | POLLOUT
            if feed is not None and gone:
                feed.close()             # the program is done with its stdin
            for fd, mask in feed.wants() if feed is not None else ():
                masks[fd] = masks.get(fd, 0) | mask
            if cancel is not None and o.killed is None:
                masks[cancel] = masks.get(cancel, 0) | POLLIN
            for fd, mask in masks.items():
                poller.register(fd, mask)
            timeout = -1 if deadline is None else int((deadline - now) * 1000) + 1
            for fd, events in poller.poll(timeout):
                if fd == cancel and fd not in open_fds:
                    run.kill("cancelled")
                    continue
                if feed is not None:
                    feed.on(fd, events)
                if fd not in open_fds:
                    for sink in relaying:
                        if sink.fd == fd and events & (POLLOUT | POLLERR | POLLHUP):
                            sink.write_some()
                    continue
                data = os.read(fd, CHUNK)
                if not data:
                    open_fds.discard(fd)
                    os.close(fd)
                    if fd == launched.err:
                        run.on_err_eof()
                    elif fd == launched.status and o.t_end is None:
                        o.t_end = time.monotonic()
                elif fd == launched.err:
                    run.err_text += data
                elif fd == launched.status:
                    run.on_status(data)
                else:
                    run.on_output(*streams[fd], data)
            for fd, (sink, _) in streams.items():
                if sink.broken and fd in open_fds:
                    # Our reader went away (EPIPE): let the program see it too,
                    # as it would in a plain shell pipeline.
                    open_fds.discard(fd)
                    os.close(fd)
    except BaseException:
        o.interrupted = True
        run.kill("interrupted")
        raise
    finally:
        if feed is not None:
            feed.close()
        for fd in open_fds:
            os.close(fd)
        os.waitpid(launched.pid, 0)
        if o.t_end is None:
            o.t_end = time.monotonic()
    return o

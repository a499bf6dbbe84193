"""What the program's standard streams are made of.

Rule: no descriptor the program holds refers to a host file or to the
caller's terminal.  A descriptor is an open file: the program can reopen it
through /proc/self/fd with other flags (O_WRONLY on the judge's input file),
truncate it, change its status flags for every other holder (O_NONBLOCK on
the caller's terminal) or use it as a terminal (raw mode, TIOCSCTTY,
tcflow).  So:

- stdout and stderr are always pipes (launch.py) that the runner relays to
  the caller's target: a file it opened itself, or the caller's fd.
- stdin is one of
  * /dev/null, as is: a reopen of the null device for writing writes nothing;
  * bytes, or a regular file up to MEMFD_MAX: a sealed memfd copy, seekable
    and mmap-able like the file, that no write, truncate or growth can change;
    when the file was the caller's own fd, its offset moves afterwards by what
    the program read, as if the program had read it directly;
  * a pipe or socket an API caller passes: handed over (not a host file);
  * anything else (a terminal, the CLI's own stdin even when it is a pipe,
    which the caller's shell may share, a FIFO, a device, a file above
    MEMFD_MAX): relayed by the supervise loop through a pipe of our own.

MEMFD_MAX: a copy costs the caller memory (tmpfs pages not charged to the
run) and time before the run starts; beyond it the relay's memory is one
64 KiB chunk whatever the size, at the price of stdin not being seekable.

The runner's ends are here too: a Sink (where one output stream goes) and a Feed (stdin
relayed); supervise.py's loop moves the data.
"""
import os
import select
import stat

from .errors import UsageError

POLLIN, POLLOUT, POLLERR, POLLHUP = select.POLLIN, select.POLLOUT, select.POLLERR, select.POLLHUP
CHUNK = 65536
PIPE_BUF = 4096
MEMFD_MAX = 64 << 20
TERMINAL_CHUNK = 256                # n_tty signals POLLOUT with fewer than 256 bytes queued (WAKEUP_CHARS)
TERMINAL_IDLE = 5.0                 # s: a terminal taking nothing once the sandbox is gone (^S, tcflow) loses the rest
F_ADD_SEALS = 1033
SEALS = 1 | 2 | 4 | 8               # F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE
NULL_DEVICE = os.makedev(1, 3)


class Sink:
    """Where one output stream goes: relayed to a file descriptor, captured in
    memory, or dropped.  Relayed data is written only when the fd is writable,
    so a stalled reader never stalls supervision.  `owned`: the fd is ours to
    close (a terminal's private description, stdio.fd_sink); `watch`: an object
    whose see(data) is shown everything relayed (the CLI's verdict-line lookout);
    `idle`: drain() never waits longer than this for a reader that takes nothing
    (set for terminals); `dropped`: bytes drain() gave up on."""
    __slots__ = ("fd", "captured", "pending", "broken", "chunk", "owned", "tty", "watch", "idle", "dropped")

    def __init__(self, fd=None, capture=False, owned=False, tty=False):
        self.fd = fd
        self.captured = bytearray() if capture else None
        self.pending = bytearray()
        self.broken = False
        self.chunk = CHUNK
        self.owned, self.tty, self.watch, self.idle, self.dropped = owned, tty, None, None, 0
        if fd is not None:
            try:
                mode = os.fstat(fd).st_mode
                if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                    self.chunk = PIPE_BUF   # POLLOUT on a pipe promises room for PIPE_BUF bytes only
            except OSError:
                self.broken = True

    def feed(self, data):
        if self.captured is not None:
            self.captured += data
        elif self.fd is not None and not self.broken:
            self.pending += data
            if self.watch is not None:
                self.watch.see(data)

    def close(self):
        if self.owned:
            os.close(self.fd)
            self.owned = False

    def drain(self, idle_timeout=None, cancel=None):
        """The sandbox is gone: hand over what is pending.  Waits for the reader as long
        as it makes progress; gives up (dropping the rest) after `idle_timeout` seconds
        without any (or `self.idle`, whichever is shorter), or when `cancel` becomes
        readable.  None waits for ever, as a pipe's writer would."""
        if self.idle is not None:
            idle_timeout = self.idle if idle_timeout is None else min(idle_timeout, self.idle)
        while self.pending and not self.broken:
            poller = select.poll()
            poller.register(self.fd, POLLOUT)
            if cancel is not None:
                poller.register(cancel, POLLIN)
            events = dict(poller.poll(None if idle_timeout is None else int(idle_timeout * 1000)))
            if not events or cancel in events:
                self.dropped += len(self.pending)
                self.pending.clear()
                return
            self.write_some()

    def write_some(self):
        """One write, of what the fd surely takes without blocking (see `chunk`)."""
        if self.pending and not self.broken:
            try:
                n = os.write(self.fd, self.pending[:self.chunk])
            except BlockingIOError:
                return
            except OSError:
                self.broken = True     # EPIPE and friends: the reader is gone, keep draining the program
                self.pending.clear()
                return
            del self.pending[:n]


class Feed:
    """The program's stdin relayed from a descriptor it must not hold (the caller's
    terminal, a pipe the caller's shell may share, a device, a file too large to
    copy: stdio.py).  At most one CHUNK is held: the next read from `src` waits
    until the program's pipe has taken all of it, so the caller's input is
    consumed only as fast as the program reads (backpressure), and a line typed
    on a terminal reaches the program at once.  `dst`, our non-blocking end of
    the program's pipe, is closed at the source's EOF, which the program then sees."""
    __slots__ = ("src", "dst", "pending")

    def __init__(self, src, dst):
        self.src, self.dst, self.pending = src, dst, b""

    def wants(self):
        if self.dst is None:
            return ()
        return ((self.dst, POLLOUT),) if self.pending else ((self.src, POLLIN),)

    def on(self, fd, events):
        if self.dst is None:
            return
        if fd == self.src and not self.pending and events & (POLLIN | POLLHUP | POLLERR):
            try:
                data = os.read(self.src, CHUNK)
            except BlockingIOError:
                return
            except OSError:              # EIO: a terminal hung up; that ends the input too
                data = b""
            if not data:
                self.close()
                return
            self.pending = data
        elif not (fd == self.dst and self.pending):
            return
        try:
            n = os.write(self.dst, self.pending)
        except BlockingIOError:
            return
        except OSError:                  # EPIPE: no process holds the program's stdin any more
            self.close()
            return
        self.pending = self.pending[n:]

    def close(self):
        if self.dst is not None:
            os.close(self.dst)
            self.dst, self.pending = None, b""


class Shared:
    """stdin=Shared(fd): an fd other processes of the caller may hold too (the
    CLI's own stdin): relayed even when it is a pipe, never handed over."""
    __slots__ = ("fd",)

    def __init__(self, fd):
        self.fd = fd


class Stdin:
    """The program's stdin: `fd` goes to the launcher; `feed` relays into it; `owned`
    are ours to close; `copy` (memfd, caller fd, start offset, size) moves the
    caller's offset after the run."""
    __slots__ = ("fd", "feed", "owned", "copy")

    def __init__(self):
        self.fd, self.feed, self.owned, self.copy = None, None, [], None

    def _own(self, fd):
        self.owned.append(fd)
        return fd

    def spawned(self):
        """The launcher has its own copy now: ours can go, unless the offset is still to be read."""
        if self.fd in self.owned and self.copy is None:
            self.owned.remove(self.fd)
            os.close(self.fd)

    def close(self):
        if self.copy is not None:
            memfd, caller, start, size = self.copy
            try:
                os.lseek(caller, start + min(os.lseek(memfd, 0, os.SEEK_CUR), size), os.SEEK_SET)
            except OSError:
                pass
            self.copy = None
        if self.feed is not None:
            self.feed.close()
        for fd in self.owned:
            os.close(fd)
        self.owned = []


def _sealed(data=b"", src=None, offset=0, size=0):
    import fcntl
    fd = os.memfd_create("sandbox-stdin", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        done = 0
        while done < size:
            n = os.sendfile(fd, src, offset + done, size - done)
            if n == 0:                   # the file shrank meanwhile: the program gets what was there
                break
            done += n
        fcntl.fcntl(fd, F_ADD_SEALS, SEALS)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_description(fd, flags):
    """An open file description of our own on what `fd` is (a terminal, a pipe), non-blocking:
    flags we set and a reader that stops reading never reach the caller's description, so the
    relay never blocks.  None when it cannot be reopened (a socket, a terminal of another user)."""
    try:
        return os.open(f"/proc/self/fd/{fd}", flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None


def _relay(s, fd, reopen):
    src = private_description(fd, os.O_RDONLY) if reopen else None
    if src is not None:
        s._own(src)
    r, w = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(w, False)            # our end only: the program's end is another description
    s.fd = s._own(r)
    s.feed = Feed(fd if src is None else src, w)


def _from_fd(s, fd, caller, where, label):
    """`caller`: None for a file we opened ourselves, False for an fd an API caller passes,
    True for Shared(fd)."""
    try:
        st = os.fstat(fd)
    except OSError as e:
        if caller is not True:
            raise UsageError(f"fd {fd} cannot be used: {e.strerror}", where, "pass an open file descriptor") from None
        s.fd = s._own(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))   # the CLI started with stdin closed
        return
    mode = st.st_mode
    if stat.S_ISCHR(mode) and st.st_rdev == NULL_DEVICE:
        s.fd = fd
        return
    if stat.S_ISDIR(mode):
        raise UsageError(f"{label} is a directory", where, "give a file for the program's stdin")
    if stat.S_ISREG(mode):
        start = os.lseek(fd, 0, os.SEEK_CUR)
        size = max(0, st.st_size - start)
        if size == 0 and not os.pread(fd, 1, start):      # empty (at its end): nothing to copy
            s.fd = s._own(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
            return
        # (size 0 with data: a /proc or /sys file, whose size says nothing; the relay reads to its end)
        if 0 < size <= MEMFD_MAX:
            s.fd = s._own(_sealed(src=fd, offset=start, size=size))
            if caller is not None:
                s.copy = (s.fd, fd, start, size)
            return
    elif (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)) and caller is False:
        s.fd = fd                         # a pipe or socket the API caller made for this run
        return
    # A regular file is read from the caller's own description (its offset is the caller's);
    # a terminal, FIFO or device through a description of our own.
    _relay(s, fd, reopen=stat.S_ISCHR(mode) or stat.S_ISFIFO(mode))


def open_stdin(stdin):
    """stdin: None (empty), bytes, a path, an fd (a pipe or socket is handed over), or Shared(fd)."""
    s = Stdin()
    try:
        if stdin is None:
            s.fd = s._own(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
        elif isinstance(stdin, (bytes, bytearray, memoryview)):
            s.fd = s._own(_sealed(stdin))
        elif isinstance(stdin, Shared):
            _from_fd(s, stdin.fd, True, "stdin", f"fd {stdin.fd}")
        elif isinstance(stdin, int):
            _from_fd(s, stdin, False, "stdin", f"fd {stdin}")
        else:
            try:
                fd = s._own(os.open(stdin, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as e:
                raise UsageError(f"cannot open {stdin} for the program's stdin: {e.strerror}", "--stdin",
                                 "give an existing, readable file") from None
            _from_fd(s, fd, None, "--stdin", stdin)
            if s.fd != fd and s.feed is None:       # copied: the host file itself is closed now
                s.owned.remove(fd)
                os.close(fd)
    except OSError as e:                            # e.g. an fd open for writing only
        s.close()
        fd = stdin.fd if isinstance(stdin, Shared) else stdin
        what, where = (f"fd {fd}", "stdin") if isinstance(fd, int) else (stdin, "--stdin")
        raise UsageError(f"cannot read {what} for the program's stdin: {e.strerror}", where,
                         "give a readable file") from None
    except BaseException:
        s.close()
        raise
    return s


def sink(target, where, closing):
    """Where one output stream goes: None (captured), a Sink (the caller's own, e.g. the CLI's),
    a path (opened here, truncated) or an fd.  A terminal fd gets a description of our own."""
    if isinstance(target, Sink):
        return target
    if target is None:
        return Sink(capture=True)
    if isinstance(target, int):
        return fd_sink(target)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise UsageError(f"cannot write {target}: {e.strerror}", where, "choose a writable path") from None
    closing.append(fd)
    return fd_sink(fd)          # (a path may name a terminal: /dev/tty, /dev/stdout)


def fd_sink(fd):
    """A Sink relaying to the caller's fd.  A terminal gets a non-blocking description of our own
    (closed by Sink.close), so a stopped terminal never blocks supervision, and the final drain
    gives up on it after TERMINAL_IDLE without progress.  A pipe's reader is waited for, as a
    program writing to it directly would wait: it is the caller's own pipeline."""
    if not os.isatty(fd):
        return Sink(fd=fd)
    own = private_description(fd, os.O_WRONLY)
    sink = Sink(fd=fd if own is None else own, owned=own is not None, tty=True)
    sink.idle = TERMINAL_IDLE
    if own is None:
        # The caller's own (blocking) description, e.g. after su a terminal we may not reopen: write
        # in pieces that fit in the room POLLOUT promises, so a write does not wait for the reader.
        sink.chunk = TERMINAL_CHUNK
    return sink

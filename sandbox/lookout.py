"""The CLI's verdict line cannot be forged by the program whose verdict it is.

The program writes to the same stderr (and often the same terminal) as the
CLI's `sandbox: STATUS: ...` line, so it can print such a line itself, or
bytes a terminal acts on: conceal or recolour what follows, move the cursor,
overwrite with a carriage return, open a string that swallows later text.
What the CLI guarantees instead:

- the real line is written after the program's output is fully relayed and
  the sandbox is gone (`execute` has returned): nothing of the program's can
  come after it, so it is the last line the CLI writes;
- a Lookout sees every byte relayed to the caller's fds; if the output held
  `sandbox:` (in any case), the real line is printed for every status, OK and
  RE included, even with --quiet, and says it is the real verdict;
- if the output that lands where the verdict does (the same terminal, or the
  same file or pipe) held anything a terminal acts on (every control
  character but newline and tab, C1 controls, invalid UTF-8, format
  characters such as U+202E), the line is preceded by TERMINAL_RESET and
  marked the same way: also in a file or pipe, because a log is often shown
  on a terminal later, and then the program's sequences act again;
- it always starts on a line of its own.
"""
import codecs

_chunks = [0]       # relayed chunks so far, every stream's: `order` says which stream wrote last

TERMINAL_RESET = (
    "\x18"                 # CAN: abandon an escape or control sequence left half-written
    "\x1b\\"               # ST: end an OSC/DCS/APC string left open (it would swallow our line)
    "\x1b[?1049l"          # back from the alternate screen
    "\x1b[!p"              # DECSTR: margins, origin and insert modes, charsets, cursor shown
    "\x1b[0m"              # SGR 0: nothing concealed, invisible, blinking or coloured
    "\x1b]104\x07\x1b]110\x07\x1b]111\x07"   # palette and default colours back to the terminal's
    "\x0f\x1b(B"           # SI, G0 = ASCII: no line-drawing characters
    "\x1b[999;1H"          # the bottom row (the terminal clamps it): nothing of the program below
    "\n\x1b[2K"            # a fresh, cleared line
)
MARK = " [the real verdict: output above that looks like one came from the program]"


class Lookout:
    """Watches one relayed stream (Sink.watch).  `shares`: the stream lands where
    the verdict does (the same terminal, file or pipe), so its controls call for
    a reset and its last byte decides whether the verdict needs a newline first."""
    __slots__ = ("lookalike", "controls", "last", "order", "tail", "decoder", "shares")

    def __init__(self, shares=False):
        self.lookalike = self.controls = False
        self.shares = shares
        self.last, self.order, self.tail = b"\n", -1, b""
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape") if shares else None

    def see(self, data):
        if not data:
            return
        _chunks[0] += 1
        self.last, self.order = data[-1:], _chunks[0]
        if not self.lookalike:
            window = (self.tail + data).lower()
            self.lookalike = b"sandbox:" in window
            self.tail = window[-7:]
        if self.decoder is not None and not self.controls:
            text = self.decoder.decode(data)
            self.controls = not text.replace("\n", "").replace("\t", "").isprintable()


def must_print(lookouts):
    """Whatever the status and --quiet: the program printed something that could pass for a
    verdict, or that could hide one (controls only count where the verdict goes)."""
    return any(w.lookalike or w.controls for w in lookouts)


def final_line(text, lookouts):
    """The verdict line as written: reset and marked when the program's output calls for it."""
    reset = any(w.controls for w in lookouts)
    sharing = [w for w in lookouts if w.shares]
    last = max(sharing, key=lambda w: w.order).last if sharing else b"\n"
    prefix = TERMINAL_RESET if reset else ("" if last == b"\n" else "\n")
    return prefix + text + (MARK if must_print(lookouts) else "") + "\n"

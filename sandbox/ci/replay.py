"""The outer side: turn the inner pytest's lines into ordinary pytest reports.

Collected tests become `Sandboxed` items (a node id and nothing else: no module of the
project is imported here); reports go through `pytest_report_from_serializable` and
`pytest_runtest_logreport`, as pytest-xdist does, so the terminal, -x, -ra, --junitxml and
other plugins see what they would see without the sandbox.  When the sandbox ends a test
(TLE, MLE, SYS...) that test gets a failed report whose message is the verdict.
"""
import builtins
import warnings

import pytest
from pytest import CollectReport, TestReport

LIMIT_STATUSES = ("TLE", "MLE", "OLE", "SYS", "SG", "XX")
FIGURES = (("status", "status"), ("cpu_time_s", "cpu_time_s"), ("wall_time_s", "wall_time_s"),
           ("memory_peak_bytes", "memory_peak_bytes"), ("processes_peak", "processes_peak"))


class Sandboxed(pytest.Item):
    """A test collected inside the sandbox; it only carries its node id and location."""

    def runtest(self):       # never called: the outer pytest only replays
        raise RuntimeError("a sandboxed test runs inside its sandbox")

    def reportinfo(self):
        return self.path, None, self.nodeid


def figures(result):
    """The Result's numbers as (name, value) pairs: JUnit <property> entries."""
    return [(f"sandbox_{key}", getattr(result, attr)) for key, attr in FIGURES]


class Malformed(Exception):
    """A line from the sandbox that is not a well-formed message: ignored, and the session fails."""


WHEN = ("setup", "call", "teardown", "collect")
OUTCOMES = ("passed", "failed", "skipped")


def _check_report(report):
    """What the outer pytest will do with a report must not fail on it (the inner is untrusted)."""
    loc = getattr(report, "location", None)
    ok = (isinstance(report.nodeid, str) and report.outcome in OUTCOMES and
          getattr(report, "when", "collect") in WHEN and
          (loc is None or isinstance(loc, tuple) and len(loc) == 3 and isinstance(loc[0], str) and
           (loc[1] is None or isinstance(loc[1], int)) and isinstance(loc[2], str)) and
          isinstance(getattr(report, "duration", 0), (int, float)) and
          all(isinstance(s, (list, tuple)) and len(s) == 2 and all(isinstance(x, str) for x in s)
              for s in report.sections) and
          all(len(p) == 2 and isinstance(p[0], str) for p in getattr(report, "user_properties", [])))
    if not ok:
        raise Malformed(f"a report with unexpected fields (node id {str(report.nodeid)[:80]!r})")
    if isinstance(report.longrepr, tuple) and not (len(report.longrepr) == 3 and isinstance(report.longrepr[0], str)
                                                   and isinstance(report.longrepr[2], str)):
        raise Malformed(f"a report with an unexpected skip location ({report.nodeid[:80]!r})")
    if report.longrepr is not None and not isinstance(report.longrepr, (str, tuple)):
        import io
        from _pytest._io import TerminalWriter      # what the terminal reporter renders with
        try:                          # render once now: a failure here, not in the summary
            report.longrepr.toterminal(TerminalWriter(io.StringIO()))
        except Exception as e:
            raise Malformed(f"a report whose traceback cannot be shown ({type(e).__name__}: {e})") from None


def _location(value):
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and
            (value[1] is None or isinstance(value[1], int)) and isinstance(value[2], str)):
        raise Malformed(f"an unexpected test location {str(value)[:80]!r}")
    return tuple(value)


class Replayer:
    def __init__(self, session):
        self.session, self.config, self.hook = session, session.config, session.config.hook
        self.items = {}              # nodeid -> {"location", "limits"}
        self.order = []
        self.done = set()            # node ids whose teardown report was replayed
        self.phases = {}             # nodeid -> phases replayed (setup/call/teardown)
        self.running = None          # (nodeid, location) between logstart and logfinish
        self.deselected = []
        self.exitstatus = None
        self.malformed = []          # what the inner sent that could not be replayed

    def _safely(self, handle, message):
        try:
            return handle(message)
        except Malformed as e:
            self.malformed.append(str(e))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            self.malformed.append(f"a {str(message.get('t'))[:20]!r} message with unexpected fields "
                                  f"({type(e).__name__}: {e})")
        return False

    def collection(self, message):
        """Handle a collection message; True once the inner has finished collecting."""
        return self._safely(self._collection, message)

    def running_message(self, message):
        self._safely(self._running, message)

    def _report(self, data):
        try:
            report = self.hook.pytest_report_from_serializable(config=self.config, data=data)
        except Exception as e:
            raise Malformed(f"a report pytest cannot read ({type(e).__name__}: {e})") from None
        if report is None:
            raise Malformed("a report of an unknown type")
        # JSON has no tuples; pytest (skip summaries, locations) asserts on them
        if isinstance(report.longrepr, list):
            report.longrepr = tuple(report.longrepr)
        if isinstance(getattr(report, "location", None), list):
            report.location = tuple(report.location)
        if hasattr(report, "user_properties"):
            try:
                report.user_properties = [tuple(p) for p in report.user_properties]
            except TypeError:
                raise Malformed("a report with unexpected user_properties") from None
        _check_report(report)
        return report

    def item(self, nodeid):
        return Sandboxed.from_parent(self.session, name=nodeid.rpartition("::")[2] or nodeid, nodeid=nodeid)

    # ------------------------------------------------------------ collection
    def _collection(self, message):
        kind = message["t"]
        if kind == "collectreport":
            self.hook.pytest_collectreport(report=self._report(message["report"]))
        elif kind == "deselected":
            self.deselected += [str(n) for n in message["nodeids"]]
        elif kind == "collected":
            items = {}
            for entry in message["items"]:
                if not isinstance(entry["nodeid"], str) or not isinstance(entry["limits"], dict):
                    raise Malformed("a collected item with unexpected fields")
                items[entry["nodeid"]] = {"location": _location(entry["location"]), "limits": entry["limits"]}
            self.items.update(items)
            self.order += list(items)
            return True
        return False

    def finish_collection(self):
        session = self.session
        items = [self.item(n) for n in self.order]
        gone = [self.item(n) for n in self.deselected]
        session.items = items
        session.testscollected = len(items)
        # one report carrying every item, so the terminal counts "collected N items"
        self.hook.pytest_collectreport(report=CollectReport("", "passed", None, items + gone))
        if gone:
            self.hook.pytest_deselected(items=gone)
        self.hook.pytest_collection_finish(session=session)

    # ------------------------------------------------------------ running
    def _running(self, message):
        kind = message["t"]
        if kind == "logstart":
            self.running = (str(message["nodeid"]), _location(message["location"]))
            self.hook.pytest_runtest_logstart(nodeid=message["nodeid"], location=self.running[1])
        elif kind == "report":
            self.replay(self._report(message["report"]))
        elif kind == "logfinish":
            self.hook.pytest_runtest_logfinish(nodeid=str(message["nodeid"]), location=_location(message["location"]))
            self.running = None
        elif kind == "warning":
            self.warning(message)
        elif kind == "finish":
            self.exitstatus = int(message["exitstatus"])
        elif kind == "collectreport":
            self.hook.pytest_collectreport(report=self._report(message["report"]))

    def replay(self, report):
        self.phases.setdefault(report.nodeid, set()).add(report.when)
        if report.when == "teardown":
            self.done.add(report.nodeid)
        self.hook.pytest_runtest_logreport(report=report)

    def warning(self, message):
        category = getattr(builtins, message["category"], None)     # only built-in classes: nothing imported
        if not (isinstance(category, type) and issubclass(category, Warning)):
            category = UserWarning
        record = warnings.WarningMessage(f"{message['message']} ({message['category']}, in the sandbox)",
                                         category, str(message["filename"]), int(message["lineno"] or 0))
        self.hook.pytest_warning_recorded.call_historic(
            kwargs=dict(warning_message=record, when=message["when"], nodeid=message["nodeid"], location=None))

    def verdict(self, nodeid, result, properties=()):
        """The sandbox ended `nodeid` with a limit verdict: fail it with the verdict as its
        message (in the phase it had reached), and end its report sequence."""
        location = self.items.get(nodeid, {}).get("location") or (nodeid.split("::")[0], None, nodeid)
        if self.running is None or self.running[0] != nodeid:
            self.hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
        seen = self.phases.get(nodeid, set())
        when = "setup" if "setup" not in seen else "call" if "call" not in seen else "teardown"
        text = f"{result.status}: {result.message}"
        props = list(properties) or figures(result)
        self.replay(TestReport(nodeid, location, {}, "failed", text, when, user_properties=props))
        if when != "teardown":
            self.replay(TestReport(nodeid, location, {}, "passed", None, "teardown", user_properties=props))
        self.hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)
        self.running = None

    def lost(self, nodeid, why):
        """A test that was collected but no sandbox reported on (the inner pytest died)."""
        location = self.items.get(nodeid, {}).get("location") or (nodeid.split("::")[0], None, nodeid)
        self.hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
        self.replay(TestReport(nodeid, location, {}, "failed", why, "setup"))
        self.replay(TestReport(nodeid, location, {}, "passed", None, "teardown"))
        self.hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)

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

    def _report(self, data):
        report = self.hook.pytest_report_from_serializable(config=self.config, data=data)
        # JSON has no tuples; pytest (skip summaries, locations) asserts on them
        if isinstance(report.longrepr, list):
            report.longrepr = tuple(report.longrepr)
        if isinstance(getattr(report, "location", None), list):
            report.location = tuple(report.location)
        if hasattr(report, "user_properties"):
            report.user_properties = [tuple(p) for p in report.user_properties]
        return report

    def item(self, nodeid):
        return Sandboxed.from_parent(self.session, name=nodeid.rpartition("::")[2] or nodeid, nodeid=nodeid)

    # ------------------------------------------------------------ collection
    def collection(self, message):
        """Handle a collection message; True once the inner has finished collecting."""
        kind = message["t"]
        if kind == "collectreport":
            self.hook.pytest_collectreport(report=self._report(message["report"]))
        elif kind == "deselected":
            self.deselected += message["nodeids"]
        elif kind == "collected":
            for entry in message["items"]:
                self.items[entry["nodeid"]] = {"location": tuple(entry["location"]), "limits": entry["limits"]}
                self.order.append(entry["nodeid"])
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
    def running_message(self, message):
        kind = message["t"]
        if kind == "logstart":
            self.running = (message["nodeid"], tuple(message["location"]))
            self.hook.pytest_runtest_logstart(nodeid=message["nodeid"], location=self.running[1])
        elif kind == "report":
            self.replay(self._report(message["report"]))
        elif kind == "logfinish":
            self.hook.pytest_runtest_logfinish(nodeid=message["nodeid"], location=tuple(message["location"]))
            self.running = None
        elif kind == "warning":
            self.warning(message)
        elif kind == "finish":
            self.exitstatus = message["exitstatus"]
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
                                         category, message["filename"], message["lineno"])
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

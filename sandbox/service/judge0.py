"""Judge0 v1.13.1, as its clients see it: request fields, validation, status ids, response shape.

What the official SDK insists on (see the reference notes): status ids 1..14
only, timestamps with fractional seconds, and with fields=* no attribute
outside v1.13.1's columns.  Our verdicts map in as the table in STATUS_OF
says; Judge0 has no Memory Limit Exceeded status, so MLE is 11 with the
message "Memory limit exceeded" (the workaround its users already use).
"""
import base64
import binascii
import math
import shlex
import tempfile

from . import archive, execute

STATUSES = {1: "In Queue", 2: "Processing", 3: "Accepted", 4: "Wrong Answer", 5: "Time Limit Exceeded",
            6: "Compilation Error", 7: "Runtime Error (SIGSEGV)", 8: "Runtime Error (SIGXFSZ)",
            9: "Runtime Error (SIGFPE)", 10: "Runtime Error (SIGABRT)", 11: "Runtime Error (NZEC)",
            12: "Runtime Error (Other)", 13: "Internal Error", 14: "Exec Format Error"}
SIGNAL_STATUS = {11: 7, 25: 8, 8: 9, 6: 10}       # SIGSEGV, SIGXFSZ, SIGFPE, SIGABRT; any other signal: 12

# v1.13.1's columns (+ status, language): what fields=* returns, in its order.
ALL_FIELDS = ("source_code", "language_id", "stdin", "expected_output", "stdout", "status_id", "created_at",
              "finished_at", "time", "memory", "stderr", "token", "number_of_runs", "cpu_time_limit",
              "cpu_extra_time", "wall_time_limit", "memory_limit", "stack_limit", "max_processes_and_or_threads",
              "enable_per_process_and_thread_time_limit", "enable_per_process_and_thread_memory_limit",
              "max_file_size", "compile_output", "exit_code", "exit_signal", "message", "wall_time",
              "compiler_options", "command_line_arguments", "redirect_stderr_to_stdout", "callback_url",
              "additional_files", "enable_network", "status", "language")
DEFAULT_FIELDS = ("token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status")
TEXT_FIELDS = ("source_code", "stdin", "expected_output")          # base64 in requests when base64_encoded
OUTPUT_FIELDS = ("stdout", "stderr", "compile_output")
RESULT_FIELDS = OUTPUT_FIELDS + ("message", "time", "wall_time", "memory", "exit_code", "exit_signal", "status_id")

# Request fields with a default and a maximum in config_info: (config key of the default, of the max, min).
LIMIT_FIELDS = {
    "cpu_time_limit": ("cpu_time_limit", "max_cpu_time_limit", 0, float),
    "cpu_extra_time": ("cpu_extra_time", "max_cpu_extra_time", 0, float),
    "wall_time_limit": ("wall_time_limit", "max_wall_time_limit", 1, float),
    "memory_limit": ("memory_limit", "max_memory_limit", 2048, int),
    "stack_limit": ("stack_limit", "max_stack_limit", 0, int),
    "max_processes_and_or_threads": ("max_processes_and_or_threads", "max_max_processes_and_or_threads", 1, int),
    "max_file_size": ("max_file_size", "max_max_file_size", 0, int),
    "number_of_runs": ("number_of_runs", "max_number_of_runs", 1, int),
}
FLAG_FIELDS = {"enable_per_process_and_thread_time_limit": "allow_enable_per_process_and_thread_time_limit",
               "enable_per_process_and_thread_memory_limit": "allow_enable_per_process_and_thread_memory_limit",
               "redirect_stderr_to_stdout": None, "enable_network": "allow_enable_network"}
ARG_FIELDS = {"compiler_options": "enable_compiler_options", "command_line_arguments": "enable_command_line_arguments"}


class Invalid(Exception):
    """422 with Judge0's body: {"field": ["what is wrong"]}."""

    def __init__(self, errors):
        super().__init__(errors)
        self.errors = errors


def b64(data):
    return None if data is None else base64.b64encode(data).decode("ascii")


def unb64(text):
    return None if text is None else base64.b64decode(text)


def _decode(value, field, encoded, errors):
    if value is None:
        return None
    if not isinstance(value, str):
        errors.setdefault(field, []).append("must be a string" + (" of base64" if encoded else ""))
        return None
    if not encoded:
        return value.encode("utf-8", "surrogatepass")
    try:   # Ruby's encode64 puts a newline every 60 characters: clients send it back like that
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        errors.setdefault(field, []).append("is not valid base64 (with base64_encoded=true every text field "
                                            "must be base64)")
        return None


def _number(value, kind, field, errors):
    if isinstance(value, str):
        try:
            value = kind(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (kind is int and value != int(value)):      # NaN would pass every range check
        errors.setdefault(field, []).append(f"is not {'an integer' if kind is int else 'a number'}")
        return None
    return kind(value)


def _flag(value, field, errors):
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    if not isinstance(value, bool):
        errors.setdefault(field, []).append("must be true or false")
        return None
    return value


def parse(body, encoded, cfg, languages, scratch, callback_hosts=()):
    """A client's submission -> the request we store (texts as base64, every limit filled in).
    Raises Invalid with every problem found, each under its field's name."""
    if not isinstance(body, dict):
        raise Invalid({"submission": ["must be a JSON object"]})
    errors, req = {}, {}
    lang_id = body.get("language_id")
    if lang_id is None:
        errors["language_id"] = ["can't be blank"]
    else:
        lang_id = _number(lang_id, int, "language_id", errors)
        lang = languages.get(lang_id) if lang_id is not None else None
        if lang_id is not None and (lang is None or lang.unavailable):
            why = f" ({lang.unavailable})" if lang is not None else ""
            errors["language_id"] = [f"language with id {lang_id} doesn't exist{why}; GET /languages lists them"]
    req["language_id"] = lang_id
    for field in TEXT_FIELDS:
        req[field] = b64(_decode(body.get(field), field, encoded, errors))
    multi_file = lang_id in languages and languages[lang_id].multi_file
    if req["source_code"] is None and "source_code" not in errors and not multi_file:
        errors["source_code"] = ["can't be blank"]
    for field, (default, maximum, minimum, kind) in LIMIT_FIELDS.items():
        value = body.get(field)
        value = cfg[default] if value is None else _number(value, kind, field, errors)
        if value is not None:
            if value < minimum:
                errors.setdefault(field, []).append(f"must be greater than or equal to {minimum}")
            elif value > cfg[maximum]:
                errors.setdefault(field, []).append(f"must be less than or equal to {cfg[maximum]} "
                                                    f"({maximum} in GET /config_info)")
        req[field] = value
    for field, allowed in FLAG_FIELDS.items():
        value = body.get(field)
        value = cfg.get(field, False) if value is None else _flag(value, field, errors)
        if value and allowed and not cfg[allowed]:
            errors.setdefault(field, []).append(f"is not allowed on this server ({allowed} is false)")
        req[field] = value
    for field, enabled in ARG_FIELDS.items():
        value = body.get(field)
        if value is not None:
            if not isinstance(value, str):
                errors.setdefault(field, []).append("must be a string")
            elif len(value) > 512:
                errors.setdefault(field, []).append("is too long (maximum is 512 characters)")
            elif not cfg[enabled]:
                errors.setdefault(field, []).append(f"is not allowed on this server ({enabled} is false)")
            else:
                try:
                    shlex.split(value)
                except ValueError as e:
                    errors.setdefault(field, []).append(f"cannot be split into arguments: {e}")
        req[field] = value
    if req["compiler_options"] and lang_id in languages and not languages[lang_id].compiled:
        errors.setdefault("compiler_options", []).append("setting compiler options is only allowed for "
                                                         "compiled languages")
    req["callback_url"] = body.get("callback_url")
    if req["callback_url"] is not None:
        from .callbacks import check
        wrong = check(req["callback_url"], callback_hosts if cfg["enable_callbacks"] else ())
        if wrong:
            errors.setdefault("callback_url", []).append(wrong)
    req["additional_files"] = _additional_files(body.get("additional_files"), cfg, languages.get(lang_id),
                                                scratch, errors)
    if multi_file and body.get("additional_files") is None:
        errors.setdefault("additional_files", []).append("a Multi-file program needs its files: a base64 zip "
                                                         "with a `run` script")
    if errors:
        raise Invalid(errors)
    return req


def _additional_files(value, cfg, lang, scratch, errors):
    """Always base64 (a zip), whatever base64_encoded says; unpacked once here so a bad zip is a 422 now."""
    if value is None:
        return None
    if not cfg["enable_additional_files"]:
        errors.setdefault("additional_files", []).append("is not allowed (enable_additional_files is false)")
        return None
    data = _decode(value, "additional_files", True, errors)
    if data is None:
        return None
    reserved = {lang.source, lang.artifact} if lang else set()
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        try:
            files, _ = archive.extract(data, f"{tmp}/files", cfg["max_extract_size"] * 1024, reserved)
        except archive.Refused as e:
            errors.setdefault("additional_files", []).append(str(e))
            return None
    if lang and lang.multi_file and "run" not in files:
        errors.setdefault("additional_files", []).append("a Multi-file program needs a `run` script at the top "
                                                         "of the zip (and may have a `compile` script)")
    return b64(data)


# ------------------------------------------------------------------ running one

def _same(out, expected):
    """Judge0's comparison: trailing whitespace of each line and of the whole ignored."""
    def strip(b):
        return b"\n".join(line.rstrip(b" \t\v\f\r\0") for line in b.split(b"\n")).rstrip(b" \t\n\v\f\r\0")
    return strip(out or b"") == strip(expected)


def _run_status(r, cpu_limit, expected):
    """(status id, message) of one run's Result."""
    if r.status == "XX":         # the program could not be executed: Judge0's own status for it
        return (14 if r.message.startswith("step 'exec' failed") else 13), r.message
    if r.status == "TLE" or (r.status == "OK" and r.cpu_time_s > cpu_limit):   # finished in the extra time
        return 5, "Time limit exceeded" + (" (wall clock)" if r.limit_hit == "wall_time" else "")
    if r.status == "MLE":
        return 11, "Memory limit exceeded"
    if r.status == "OLE":
        return 8, "File size limit exceeded" if r.limit_hit == "file_size" else "Output limit exceeded"
    if r.status == "SYS":
        call = (r.syscall or {}).get("name") or (r.syscall or {}).get("number")
        return 12, f"Bad system call: {call} (not allowed by the {r.seccomp} seccomp policy)"
    if r.status == "SG":
        return SIGNAL_STATUS.get(r.signal, 12), f"Caught fatal signal {r.signal}"
    if r.status == "RE":
        return 11, f"Exited with error status {r.exit_code}"
    if expected is not None and not _same(r.stdout, expected):
        return 4, None
    return 3, None


def limits_of(req):
    """Judge0's limits (seconds, KB) -> the sandbox's.  CPU: the run may go on for cpu_extra_time
    past the limit (isolate's -x) and is TLE if it used more than the limit."""
    limits = {"cpu_time": req["cpu_time_limit"] + req["cpu_extra_time"], "wall_time": req["wall_time_limit"],
              "memory": req["memory_limit"] * 1024, "processes": req["max_processes_and_or_threads"],
              "file_size": req["max_file_size"] * 1024, "output": req["max_file_size"] * 1024}
    if req["stack_limit"]:
        limits["stack"] = req["stack_limit"] * 1024
    if req["enable_per_process_and_thread_memory_limit"]:
        limits["address_space"] = req["memory_limit"] * 1024
    return limits


def process(req, languages, cfg):
    """Compile and run a stored request; the result columns."""
    lang = languages.get(req["language_id"])
    if lang is None or lang.unavailable:
        return internal_error(f"language {req['language_id']} is not available on this server")
    ws = None
    try:
        if req["additional_files"]:
            ws = execute.Workspace()
            ws.files, ws.tops = archive.extract(unb64(req["additional_files"]), ws.extra,
                                                cfg["max_extract_size"] * 1024, {lang.source, lang.artifact})
        art, compiled = execute.compile(lang, unb64(req["source_code"]) or b"", req["memory_limit"],
                                        shlex.split(req["compiler_options"] or ""),
                                        shlex.split(req["command_line_arguments"] or ""), ws)
        compile_output = (compiled.stdout or b"") + (compiled.stderr or b"")
        if art is None:
            if compiled.status == "XX":
                return internal_error(f"compiling: {compiled.message}")
            if compiled.status == "TLE":
                compile_output = b"Compilation time limit exceeded."
            return dict(_empty(), status_id=6, compile_output=b64(compile_output),
                        message=None if compiled.status in ("OK", "RE", "TLE") else f"compiler: {compiled.message}")
        with art:
            return _runs(art, req, compile_output, ws)
    finally:
        if ws:
            ws.close()


def _runs(art, req, compile_output, ws):
    expected = unb64(req["expected_output"])
    stdin = unb64(req["stdin"]) or b""
    limits = limits_of(req)
    runs = []
    for _ in range(req["number_of_runs"]):      # Judge0 averages time and memory; stops at the first non-AC
        r = execute.run(art, stdin, limits, req["redirect_stderr_to_stdout"], ws)
        status, message = _run_status(r, req["cpu_time_limit"], expected)
        runs.append(r)
        if status != 3:
            break
    n = len(runs)
    return {"status_id": status, "message": message, "stdout": b64(r.stdout or b""),
            "stderr": b64(r.stderr) if r.stderr else None, "compile_output": b64(compile_output or None),
            "time": f"{sum(x.cpu_time_s for x in runs) / n:.3f}",
            "wall_time": f"{sum(x.wall_time_s for x in runs) / n:.3f}",
            "memory": sum(x.memory_peak_bytes for x in runs) // n // 1024,
            "exit_code": r.exit_code if r.exit_code is not None else 0, "exit_signal": r.signal}


def _empty():
    return {f: None for f in RESULT_FIELDS}


def internal_error(reason):
    return dict(_empty(), status_id=13, message=reason)


# ------------------------------------------------------------------ the response

class BadFields(Exception):
    pass


def wanted_fields(param):
    if param is None or param == "":
        return DEFAULT_FIELDS
    if param.strip() == "*":
        return ALL_FIELDS
    names = [f.strip() for f in param.split(",") if f.strip()]
    bad = [f for f in names if f not in ALL_FIELDS]
    if bad:
        raise BadFields(f"invalid fields: [{', '.join(bad)}]")
    return tuple(names)


class NotUtf8(Exception):
    pass


def render(row, fields, encoded, languages):
    """A stored submission as Judge0 returns it.  Raises NotUtf8 when a text is not UTF-8 and
    base64 was not asked for (Judge0's 400)."""
    req, res = row["request"], row["result"] or {}
    status_id = res.get("status_id") or (2 if row["state"] == "running" else 1)
    lang = languages.get(req["language_id"])
    out = {}
    for f in fields:
        if f in TEXT_FIELDS or f in OUTPUT_FIELDS:
            value = req.get(f) if f in TEXT_FIELDS else res.get(f)
            if value is not None and not encoded:
                try:
                    value = base64.b64decode(value).decode("utf-8")
                except UnicodeDecodeError:
                    raise NotUtf8(f) from None
            out[f] = value
        elif f == "message":
            msg = res.get("message")
            out[f] = b64(msg.encode()) if encoded and msg is not None else msg
        elif f == "status":
            out[f] = {"id": status_id, "description": STATUSES[status_id]}
        elif f == "status_id":
            out[f] = status_id
        elif f == "language":
            out[f] = {"id": req["language_id"], "name": lang.name if lang else None}
        elif f in ("token", "created_at", "finished_at"):
            out[f] = row[f]
        elif f in res:
            out[f] = res[f]
        else:
            out[f] = req.get(f)
    return out

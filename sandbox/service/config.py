"""The service's settings: where it listens and stores, and Judge0's defaults and maxima.

JUDGE0 holds the 39 keys of Judge0 v1.13.1's `GET /config_info`, with the
values its code uses (not its older docs).  The official SDK's `Config` model
has no defaults, so every key must be served; clients read the real values
from there, so a deployment may change them in a config file (`--config`),
and the request validation in judge0.py reads the same dict: one source.
Where we differ from Judge0 it is said next to the key.
"""
import os

JUDGE0 = {
    "maintenance_mode": False,
    "enable_wait_result": True,
    "enable_compiler_options": True,
    "allowed_languages_for_compile_options": [],      # empty: every compiled language
    "enable_command_line_arguments": True,
    "enable_submission_delete": True,                 # Judge0: false; here DELETE needs the token like the rest
    "enable_callbacks": False,                        # true only with --allow-callback HOST
    "callbacks_max_tries": 3,
    "callbacks_timeout": 5.0,
    "enable_additional_files": True,
    "max_queue_size": 100,
    "cpu_time_limit": 5.0,
    "max_cpu_time_limit": 15.0,
    "cpu_extra_time": 1.0,
    "max_cpu_extra_time": 5.0,
    "wall_time_limit": 10.0,
    "max_wall_time_limit": 20.0,
    "memory_limit": 128000,                           # KB, as Judge0
    "max_memory_limit": 512000,
    "stack_limit": 64000,
    "max_stack_limit": 128000,
    "max_processes_and_or_threads": 60,
    "max_max_processes_and_or_threads": 120,
    "enable_per_process_and_thread_time_limit": False,
    "allow_enable_per_process_and_thread_time_limit": True,
    "enable_per_process_and_thread_memory_limit": False,
    "allow_enable_per_process_and_thread_memory_limit": True,
    "max_file_size": 1024,
    "max_max_file_size": 4096,
    "number_of_runs": 1,
    "max_number_of_runs": 20,
    "redirect_stderr_to_stdout": False,
    "max_extract_size": 10240,
    "enable_batched_submissions": True,
    "max_submission_batch_size": 20,
    "submission_cache_duration": 1.0,
    "use_docs_as_homepage": False,
    "enable_network": False,
    "allow_enable_network": False,                    # Judge0: true; a sandbox here has no network to give
}

# Ours, beside Judge0's: the largest request body, in bytes (413 above it).
SERVICE = {"max_body_size": 16 << 20}

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def data_dir():
    """$XDG_DATA_HOME/sandbox/service (~/.local/share/...): the default home of the database."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "sandbox", "service")


class Settings:
    """Everything the running service needs to know, from the command line and --config."""

    def __init__(self, host="127.0.0.1", port=2358, workers=None, database=None, auth_token=None,
                 languages=None, max_queue=None, log_json=False, allow_callback=(), overrides=None):
        self.host, self.port, self.log_json = host, port, log_json
        self.workers = workers or os.cpu_count() or 1
        self.url = database if database and "://" in database else None      # postgresql://...
        self.database = self.url or os.path.abspath(database or os.path.join(data_dir(), "submissions.sqlite3"))
        self.auth_token = auth_token or None
        self.languages = languages
        self.allow_callback = tuple(allow_callback)
        self.judge0 = dict(JUDGE0)
        self.service = dict(SERVICE)
        for key, value in (overrides or {}).items():
            (self.judge0 if key in JUDGE0 else self.service)[key] = value
        if max_queue is not None:
            self.judge0["max_queue_size"] = max_queue
        if self.allow_callback:
            self.judge0["enable_callbacks"] = True

    @property
    def data_dir(self):
        """The one directory the service writes: the database's (with PostgreSQL, the default one)."""
        return data_dir() if self.url else os.path.dirname(self.database)


def load_overrides(path):
    """A YAML mapping of config_info keys (and max_body_size) with values of the same type."""
    import yaml
    from ..errors import UsageError, did_you_mean
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}", "--config", "give a readable YAML file") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path} is not valid YAML: {e}", "--config", "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must be a mapping of settings", "--config", "write key: value lines")
    known = {**JUDGE0, **SERVICE}
    for key, value in data.items():
        if key not in known:
            raise UsageError(f"unknown setting {key!r}", f"{path}: {key}",
                             did_you_mean(key, known, "see GET /config_info for the keys"))
        want = type(known[key])
        ok = isinstance(value, want) or (want is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok or (want is int and isinstance(value, bool)):
            raise UsageError(f"{key} must be {want.__name__}, not {type(value).__name__}", f"{path}: {key}",
                             f"write e.g. {key}: {known[key]!r}")
    return {k: float(v) if isinstance(JUDGE0.get(k), float) else v for k, v in data.items()}

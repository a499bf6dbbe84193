"""`sandbox serve`: a judging service over HTTP.

Two surfaces on one server: Judge0's v1.13.1 API (so existing Judge0 clients
and the official SDK work unchanged) and this project's own `/api/v1`.  Both
are thin layers over the public judging API (`sandbox.run`, `sandbox.judge`):

    config.py     the service's settings and Judge0's defaults and maxima
    storage.py    submissions as rows (SQLite, WAL); with pgstore.py the only modules that know SQL
    pgstore.py    the same rows in PostgreSQL, plus fenced claims, leases, worker heartbeats
    languages.py  profiles/languages.yaml: Judge0 ids -> compile and run profiles
    archive.py    additional_files: a client's zip, unpacked without trusting it
    execute.py    one submission: compile once, run, measure (no HTTP, no SQL)
    judge0.py     Judge0's request fields, validation, status ids and response shape
    workers.py    the queue and the worker threads; recovery after a crash
    callbacks.py  callback_url: the PUT of a finished submission, to allowed hosts only
    app.py        the HTTP application (routes of both surfaces)
    native.py     the /api/v1 routes
    cli.py        `sandbox serve` options -> a running server
    distributed.py  serve --broker: Dramatiq queues per language, the sweeper, /workers per queue
    worker.py     `sandbox worker`: Dramatiq processes judging from those queues on any machine

Its dependencies (FastAPI, uvicorn, psutil; Dramatiq, redis, psycopg for
several machines, imported only there) are the `service` extra; nothing here is
imported by `sandbox run`.
"""

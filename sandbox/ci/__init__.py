"""CI integrations built on the public API (`sandbox.run`, `sandbox.prepare/execute`).

- `plugin`: the pytest plugin (`pytest --sandbox`): the outer pytest runs no code of the
  project; one inner pytest runs inside a sandbox (`inner`) and its reports are replayed
  (`replay`).  `box` builds that sandbox.
- `grade`: `sandbox grade`, GitHub Classroom autograding in sandboxes (`classroom` reads
  and compares, `workflow` neutralises workflow commands in untrusted output).
- `action`: the helpers the composite GitHub Action (action.yml) calls.
"""

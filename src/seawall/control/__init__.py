"""The control plane: scheduling, jobs, users and roles, and the audit log.

Between the interfaces (the HTTP API, ``seawall serve``, the CLI) and the
plan: ``plane.ControlPlane`` is the one object an interface talks to.
Modules: ``store`` (the state directory: SQLite and a secret key),
``access`` (users, tokens, roles, TOTP), ``audit`` (the hash-chained log in
the repository), ``jobs`` (background runs with progress and events),
``schedule`` (cron slots, missed runs), ``plane`` (all of it together).
"""

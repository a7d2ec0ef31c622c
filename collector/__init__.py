"""The Overt collector: where sealed batches, enrollments, policies and exemptions meet.

An HTTP service (FastAPI on uvicorn) speaking ``docs/PROTOCOL.md`` version 1.
It stores ciphertext and the plaintext batch headers; it cannot read
captured content. Modules, from the wire inwards:

- :mod:`collector.cli`, :mod:`collector.server`: ``overt collector serve``
  and the credential commands; :mod:`collector.admin_cli`: ``overt admin``.
- :mod:`collector.api`: the HTTP layer (``create_app``; device and admin
  routes, body reading, the OpenAPI additions), including the lean
  batch-upload path; :mod:`collector.schemas`: its JSON shapes;
  :mod:`collector.web`: the admin pages (another router on the same app).
- :mod:`collector.service`: every rule, shared by the JSON API and the
  pages — the device hot path (admission, ingest, consent, erasure, audit)
  there, and the use cases it composes: :mod:`collector.accounts` (admins,
  enrollment, devices), :mod:`collector.policy_desk` (signed policies),
  :mod:`collector.exemptions` (requests, decisions, grants);
  :mod:`collector.auth`, :mod:`collector.credentials`: who is calling, and
  the secrets that prove it.
- :mod:`collector.store`: one storage Protocol per aggregate and the
  records they speak in, which export reads through;
  :mod:`collector.store.sqlite` and :mod:`collector.blobs`: the embedded
  implementation (SQLite + segment files, group commit).
- :mod:`collector.config`: the typed configuration; :mod:`collector.errors`:
  the exception tree (one base, :class:`~collector.errors.CollectorError`).

Imports ``policies`` and ``overt`` (the wire formats, the file writer), never
the agent or the tray.
"""

"""Fixtures for the sources contract (:mod:`tests.agent.sources.test_contract`).

``desktop`` is the private Xvfb + openbox of :mod:`tests.e2e.conftest`, the
same fixture imported here, so that the contract's X11 backend runs on it; it
is started only when an X11 case runs. When this folder and ``tests/e2e`` run
in one session each has its own desktop (pytest keeps a session fixture per
folder that defines it).
"""

from tests.e2e.conftest import desktop  # noqa: F401 - a fixture, found by name

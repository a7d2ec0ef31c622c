"""The tray: a thin PySide6 client of the agent's control API.

The tray holds no capture state: the agent decides, the tray shows and asks.
It reaches the agent only through ``agent.control.client`` and reads the
control API's answers as the models of ``overt.wire`` (import-linter and
``tests/ui/test_imports.py`` hold it to that). Layout, from the wire inwards:

- ``agent_api``: :class:`~ui.agent_api.AgentApi`, one typed method per control
  command, and its implementation over ``agent.control.client.ControlClient``;
- ``presentation``: the Qt-free core (icon, tooltip, menu, announcements,
  consent prompts, and the headline for the tray and the terminal), with
  ``notice_text``, ``ledger_view`` and ``exemption_view`` for the wording of
  the three windows;
- ``icons``, ``budget_chart``, ``dialogs``, ``calls``, ``tray``: the Qt layer;
  ``qt_binding`` checks that the installed PySide6 can run it for long;
- ``launcher`` and ``app``: ``overt tray`` and the agent it starts;
- ``autostart``: ``overt install-autostart``;
- ``control_cli``: ``overt status|pause|…`` (the terminal's client), with
  ``cli_text`` for what it prints.

Every error ``ui`` raises is a :class:`~ui.errors.TrayError` (see
:mod:`ui.errors`).
"""

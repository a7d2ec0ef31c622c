"""The ``overt`` command: one entry point that dispatches to each package's CLI."""

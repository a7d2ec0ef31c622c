"""The wire formats: what the agent writes, the collector stores and the export reads.

A leaf: it imports nothing of ours. One module per format, each versioned,
each with one parser that validates once:

- ``records``: the record vocabulary of a batch body;
- ``batch``: the batch header (format 1) and its record counts;
- ``body``: the batch body (format 1) and its limits, with its private
  parts ``_columns`` (the record section's columns) and ``_pointer`` (the
  path records' bit-packed stream);
- ``frames``: screenshot images and delta-frame reassembly;
- ``sealed``: the sealed batch (format 1: signed, encrypted to the dataset key);
- ``signature``: the signature of a device's HTTP request (version 1);
- ``control``: the messages of the agent's local control API (version 1),
  with ``control_results`` (each command's result) and ``notice`` (the
  capture notice it carries, format 1);
- ``errors``: the errors of the parsers.

docs/FORMATS.md specifies the bytes of all but the control messages
(docs/CONTROL.md, generated from the models by tools/control_doc.py).
"""

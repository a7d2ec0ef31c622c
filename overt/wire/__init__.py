"""The wire formats: what the agent writes, the collector stores and the export reads.

A leaf: it imports nothing of ours. One module per format, each versioned,
each with one parser that validates once:

- ``records``: the record vocabulary of a batch body;
- ``batch``: the batch header (format 1) and its record counts;
- ``body``: the batch body container and its codec;
- ``frames``: screenshot images and delta-frame reassembly;
- ``sealed``: the sealed batch (signed, encrypted to the dataset key);
- ``signature``: the signature of a device's HTTP request;
- ``control``: the messages of the agent's local control API.

docs/FORMATS.md specifies the bytes.
"""

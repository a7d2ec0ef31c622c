"""The data team's export: sealed batches from a collector's store into a dataset.

It reads the collector's store and ``overt.wire``, never the agent. One
sealed batch goes through these modules, top to bottom::

    overt export --data DIR --key DATASET.key --out OUT
     │
     command.main              arguments, the dataset key, messages, exit status
     │
     run.export_batches        one batch at a time into a hidden directory beside
     │                         OUT; duplicates and rejections, progress,
     │                         dataset.json, the one rename that publishes OUT
     ├─ store.CollectorStore   the store's rows in (device, seq) order, each with
     │                         its device's enrolled key: an UnopenedBatch
     ├─ opening.open_batch     the trust step: verify the signature, decrypt,
     │                         decode within the limits, check against the signed
     │                         header: an OpenedBatch, or BatchRejected (reason)
     └─ dataset.DatasetWriter  one opened batch applied as a unit (undone if it
         │                     does not go through): sessions, action rows, frames
         ├─ actions            records in time order → action columns
         ├─ reassembly         keyframes decoded, deltas applied, a chain's frame
         │                     held only while a later delta names it
         ├─ png                frames → PNG files, on worker threads
         └─ layout             the files on disk: names, columns, dataset.json

``errors`` draws the exception tree. Only ``command`` deals with the
terminal and the arguments, only ``store`` reads the collector; ``run``,
``dataset``, ``png`` and ``layout`` write, into the hidden directory they
are given; ``opening``, ``actions`` and ``reassembly`` hold no paths.
"""

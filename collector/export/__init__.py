"""The data team's export: sealed batches from a collector's store into a dataset.

It reads the store and ``overt.wire``, never the agent: ``opening`` is the
trust step (verify, decrypt, decode, check), ``dataset`` writes the dataset,
``png`` compresses the frames actions refer to, ``export`` runs the command.
"""

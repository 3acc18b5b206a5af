"""The run ledger: the end of every stage run (``finish``), its typed result (``result``, with
``old_shapes`` for metrics.json files written before it) and the MLflow store (``store``)."""

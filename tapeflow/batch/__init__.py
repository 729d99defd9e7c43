"""The batch runtime's library: what the Dagster assets call, with no Dagster inside.

A run covers instrument-days (:class:`~tapeflow.batch.targets.Target`); for each it finds the raw
sources that hold it (:mod:`~tapeflow.batch.sources`), decodes and splits them into normalized
partitions (:mod:`~tapeflow.batch.normalize`), sizes and builds the day's bars
(:mod:`~tapeflow.batch.bars`), reads the trailing history baselines need
(:mod:`~tapeflow.batch.history`) and describes what each partition holds
(:mod:`~tapeflow.batch.stats`). ``assets/`` wires these into Dagster.
"""

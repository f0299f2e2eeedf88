"""Measuring models: long-context QA accuracy, DNA bits per base against compressors, greedy decoding.

* ``generate``: stream a document through the state in pieces; greedy-decode an answer (also used by ``ask``).
* ``suites``: the QA families (NIAH, KV recall, bAbI) drawn at a document length; shared with training.
* ``seeds``: disjoint training and evaluation seed spaces.
* ``text_eval`` / ``dna_eval``: the measurements, returning plain dataclasses.
* ``baselines``: gzip, xz and adaptive order-k Markov bits per base.
* ``console``: the ``titans eval`` terminal side.
"""

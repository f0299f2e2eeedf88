"""Training Titans models: configs and presets, the data mixtures, the loop, checkpoints, DDP.

* ``config``: ``TrainConfig`` (``model`` + ``data`` + ``optim``), JSON/TOML.
* ``presets``: ``text-tiny``, ``text-tiny-mac``, ``dna-tiny``, ``dna-tiny-mac``, ``text-small``, ``dna-small``.
* ``data``: deterministic batches from (seed, step, stream): QA mixtures, language modelling, genome windows.
* ``optimizer``: AdamW and the warm-up + cosine schedule.
* ``trainer``: ``train(TrainRun)``, the loop (TBPTT, accumulation, bf16 on GPU, DDP), the final model.
* ``checkpoint``: pickle-free, atomic checkpoints and resume.
* ``distributed``: ``torchrun`` process groups and collectives.
* ``validation``: held-out loss and accuracy during training; ``runlog``: the JSON-lines log.
* ``console``: the ``titans train`` terminal side.
"""

"""The Lava side of the ``lava`` target: files that run in Lava's own Python 3.10 environment.

Nothing here imports torch or spikeport. :func:`spikeport.targets.lava.runner.stage_runtime` copies
these files, together with ``method_kernels.py`` and ``prng.py``, into a folder of their own before
every run, because Lava's compiler imports every module in the folder of a process class while it
looks for process models (so that folder must hold nothing that needs spikeport).
"""

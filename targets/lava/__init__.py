"""The ``lava`` target: lowers to stock Lava processes and runs them in Lava's own Python 3.10
environment through a worker process (see ``worker.py``)."""

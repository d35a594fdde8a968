# The two commands of the README. Both create what they need on a fresh machine and are idempotent:
#   make demo   the main job on the bundled MNIST-5k CNN (report in out/demo/)
#   make test   lint + the whole test suite (Lava tests included)
# Two environments: .venv (Python 3.11, torch 2.13 CPU, spikeport) and the Lava environment (Python 3.10,
# lava-nc 0.10, lava-dl 0.6, numpy<2) in ~/.cache/spikeport, because Lava supports Python 3.10 only
# (docs/design.md, "Two Python environments").

SHELL := /bin/bash
PY311 ?= $(shell command -v python3.11 || command -v python3)
PY310 ?=  # a Python 3.10 for Lava; empty: `spikeport lava-env` finds pyenv's 3.10 or python3.10
VENV := .venv
OUT ?= out/demo

.PHONY: env lava-env demo test lint clean

$(VENV)/.stamp: pyproject.toml
	$(PY311) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[dev]'
	# the benchmark peers (spikeport bench --suite peers); --no-deps: their requirements pull a CUDA torch
	$(VENV)/bin/pip install -q --no-deps spikingjelly==2.0.0 snntorch==1.0.0 loguru
	touch $@

# Lava runs in its own Python 3.10 environment, in spikeport's cache folder (~/.cache/spikeport):
# `spikeport lava-env` creates it and fetches lava-dl's ground-truth traces; it is idempotent.
lava-env: $(VENV)/.stamp
	$(VENV)/bin/spikeport lava-env $(if $(PY310),--python $(PY310))

env: $(VENV)/.stamp lava-env

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python scripts/lint_imports.py

test: env lint
	$(VENV)/bin/python -m pytest -n 2

demo: env
	$(VENV)/bin/spikeport demo --out $(OUT)

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache

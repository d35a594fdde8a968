# The two commands of the README. Both create what they need on a fresh machine and are idempotent:
#   make demo   the main job on the bundled MNIST-5k CNN (report in out/demo/)
#   make test   lint + the whole test suite (Lava tests included)
# Two environments: .venv (Python 3.11, torch 2.13 CPU, spikeport) and .venv-lava (Python 3.10,
# lava-nc 0.10, lava-dl 0.6, numpy<2), because Lava supports Python 3.10 only (DESIGN.md section 4).

SHELL := /bin/bash
PY311 ?= $(shell command -v python3.11 || command -v python3)
PY310 ?= $(shell (pyenv prefix 3.10.13 || pyenv prefix 3.10) 2>/dev/null | head -n1 | sed 's|$$|/bin/python|' | grep . || command -v python3.10)
VENV := .venv
LAVA := .venv-lava
NETX := .cache/lava-dl/netx
OUT ?= out/demo

.PHONY: env lava-env demo test lint clean

$(VENV)/.stamp: pyproject.toml
	$(PY311) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

$(LAVA)/.stamp:
	@test -x "$(PY310)" || { echo "Python 3.10 not found (set PY310=/path/to/python3.10)"; exit 1; }
	$(PY310) -m venv $(LAVA)
	$(LAVA)/bin/pip install -q --upgrade pip
	$(LAVA)/bin/pip install -q "lava-nc==0.10.0" "numpy<2" h5py
	$(LAVA)/bin/pip install -q --no-deps "lava-dl==0.6.0"
	touch $@

# lava-dl's own ground-truth traces ship inside its wheel (tests/lava/lib/dl/netx): fetch and unpack them
$(NETX)/.stamp: $(LAVA)/.stamp
	mkdir -p .cache/lava-dl
	$(LAVA)/bin/pip download -q --no-deps "lava-dl==0.6.0" -d .cache/lava-dl
	$(LAVA)/bin/python targets/lava/unpack_wheel.py "$$(ls .cache/lava-dl/lava_dl-0.6.0-*.whl | head -n1)" \
	  tests/lava/lib/dl/netx/ $(NETX)
	touch $@

env: $(VENV)/.stamp lava-env
lava-env: $(LAVA)/.stamp $(NETX)/.stamp

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check .

test: env lint
	$(VENV)/bin/python -m pytest

demo: env
	$(VENV)/bin/spikeport demo --out $(OUT)

clean:
	rm -rf $(VENV) $(LAVA) out .pytest_cache .ruff_cache

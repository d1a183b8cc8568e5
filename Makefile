# TownSense front door. Every target bootstraps .venv itself: nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench mpy typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/townsense demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m simulator.bench

# Compile every firmware file with mpy-cross into build/mpy (what provisioning copies).
mpy: $(STAMP)
	$(PY) -m simulator.mpy build/mpy

typecheck: $(STAMP)
	$(PY) -m simulator.typecheck

clean:
	rm -rf build .pytest_cache .mypy_cache .hypothesis

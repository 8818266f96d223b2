# The README's two commands: `make run` and `make test`. Each sets up everything
# it needs on a fresh clone (virtual environment, torch first, the project).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.zapstream-installed

.PHONY: run test install lint typecheck unit bench clean

run: install
	$(VENV)/bin/zapstream up

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

install: $(STAMP)

# torch is installed first and pinned, so sentence-transformers never pulls another
# build; it is skipped when the venv already has that exact version.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ "$$($(PY) -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null)" != "$(TORCH_VERSION)" ]; then \
		echo "installing torch==$(TORCH_VERSION) (first time only)"; \
		$(PY) -m pip install --progress-bar off "torch==$(TORCH_VERSION)"; \
	fi
	$(PY) -m pip install --progress-bar off -q -e '.[dev]'
	@touch $(STAMP)

unit: install
	$(VENV)/bin/pytest tests/unit

bench: install
	$(PY) bench/webhook_bench.py

clean:
	rm -rf .zapstream .pytest_cache .mypy_cache .ruff_cache

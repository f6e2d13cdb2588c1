# Developer entry points: make venv | run | test | lint (GNU make).

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Random-weight test models are built once and kept outside the repository.
XTTS_DESKTOP_CACHE_DIR ?= $(HOME)/.cache/xtts-desktop-tests
PYTEST_ARGS ?=

.DEFAULT_GOAL := test
.PHONY: venv run test lint test-env clean-venv

venv: $(STAMP)

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install --upgrade pip

# Re-installs only when pyproject.toml changes.
$(STAMP): pyproject.toml | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install -e '.[test]'
	touch $@

run: $(STAMP)
	$(VENV)/bin/xtts-desktop

test-env:
	scripts/setup_test_env.sh

test: $(STAMP) test-env
	QT_QPA_PLATFORM=offscreen XTTS_DESKTOP_CACHE_DIR="$(XTTS_DESKTOP_CACHE_DIR)" \
		$(VENV_PYTHON) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check xtts_desktop tests

clean-venv:
	rm -rf $(VENV)

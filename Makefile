# Developer entry points: make venv | run | test | lint (GNU make).

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Random-weight test models are built once and kept outside the repository.
XTTS_DESKTOP_CACHE_DIR ?= $(HOME)/.cache/xtts-desktop-tests
PYTEST_ARGS ?=

.DEFAULT_GOAL := test
.PHONY: venv run test lint test-env clean-venv screenshot

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

# The README's screenshot, in a real X server (Xvfb); as root it installs the X libraries Qt's
# xcb plugin loads.
XCB_PACKAGES := xvfb libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0
screenshot: $(STAMP) test-env
	@if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq --no-install-recommends $(XCB_PACKAGES) >/dev/null; \
	else echo "needs: sudo apt-get install $(XCB_PACKAGES)"; fi
	QT_QPA_PLATFORM=xcb xvfb-run -a $(VENV_PYTHON) scripts/screenshot.py docs/screenshot.png

# The project's two commands: `make run` and `make test`. Everything else here
# serves them. Both work on a fresh Debian machine as root with nothing
# installed by hand.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test run lint typecheck imports pytest bench desktop-deps clean

test: desktop-deps $(STAMP) lint typecheck imports pytest

# Debian packages the desktop tests need (Xvfb, openbox, trayer, xdotool, Qt's
# xcb libraries, a compiler for pynput's evdev). Installs only what is missing.
desktop-deps:
	@tools/ensure-debian-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy overt agent ui policies collector

imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/engine.py

# The whole system on the embedded defaults: demo keys, a local collector on
# SQLite, the agent enrolled, the agent and the tray on this desktop (or on a
# private Xvfb when there is no display, with a short scripted session).
# Ctrl+C stops everything it started. See tools/demo.py and README.md.
run: desktop-deps $(STAMP)
	$(BIN)/python tools/demo.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info

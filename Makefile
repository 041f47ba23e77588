# Two entry points for a fresh machine: `make demo` (set up, fetch the default pair, generate)
# and `make test` (set up, lint and type-check, run the test suite on tiny models built inside the tests).
# `make peers` (optional, not part of `make test`) builds llama.cpp for the bench's llama.cpp peer.
# `make mutate` (slow, not in CI): mutation testing of the decoding core, see docs/testing.md.
VENV ?= .venv
BIN := $(VENV)/bin
PROMPT ?= Write a Python function is_palindrome(s) that ignores case and everything but letters, with a docstring.
# Empty: the built-in default (lookups sized by their match); e.g. METHOD="--tree auto --drafter hybrid".
METHOD ?=

.PHONY: setup demo test lint mutate peers

$(VENV)/.installed: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/biglittle models fetch
	$(BIN)/biglittle data fetch
	$(BIN)/biglittle generate $(METHOD) --compare-ar "$(PROMPT)"

# llama.cpp from its source package on PyPI (cmake and a C++ compiler needed; 2 jobs, several minutes), for the
# default pair's GGUF files, which `models fetch --keep-gguf` keeps; safe to rerun (docs/bench.md).
peers: setup
	$(BIN)/biglittle models fetch --keep-gguf
	$(BIN)/biglittle peers build

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

$(VENV)/.mutate-installed: requirements-mutate.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-mutate.txt
	touch $@

# One worker: the mutants run one at a time. Results are kept in mutants/, so a rerun only tests what changed;
# delete mutants/ after changing the tests to start afresh.
mutate: $(VENV)/.mutate-installed
	$(BIN)/mutmut run --max-children 1
	$(BIN)/python scripts/mutation_summary.py --survivors

# Two entry points for a fresh machine: `make demo` (set up, fetch the default pair, generate)
# and `make test` (set up, lint and type-check, run the test suite on tiny models built inside the tests).
VENV ?= .venv
BIN := $(VENV)/bin
PROMPT ?= Translate German to English: Wenn man nichts dagegen machen kann, sollte man mitmachen.

.PHONY: setup demo test lint

$(VENV)/.installed: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/biglittle models fetch
	$(BIN)/biglittle data fetch
	$(BIN)/biglittle generate --compare-ar "$(PROMPT)"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

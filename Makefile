# sanlab: `make demo` and `make test` do all set-up themselves (Debian packages, the .venv) and are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)

.PHONY: setup host venv lint typecheck unit test demo clean

setup: host venv

host:
	@scripts/setup-host.sh
	@scripts/setup-docker.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	@scripts/setup-host.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip==26.3
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

lint: venv
	$(BIN)/ruff check target lab tests
	$(BIN)/ruff format --check target lab tests

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q tests/unit

test: setup lint typecheck
	$(BIN)/pytest -q

demo: setup
	$(BIN)/sanlab run scenarios/quickstart.yml

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

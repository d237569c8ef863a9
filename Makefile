# The README's commands. Everything runs from the project's own .venv, made on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
DEMO   := build/demo

.PHONY: install demo test lint unit bench clean

install: $(STAMP)

# Debian tools the tests need are added here as the components that need them land.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The batch half (two CSV files compared), then the stream half: `flowops up --demo` for
# DEMO_SECONDS on the embedded broker (ports 9092 and 6066), alerts printed as they come.
DEMO_SECONDS ?= 40
demo: install
	$(BIN)/python examples/sample_data.py $(DEMO)
	$(BIN)/flowops drift baseline --data $(DEMO)/reference.csv -o $(DEMO)/profile.json
	@# exit 1 means "drift found", which is what the demo data is made to show
	$(BIN)/flowops drift compare --reference $(DEMO)/profile.json --current $(DEMO)/current.csv \
		|| test $$? -eq 1
	$(BIN)/flowops up --demo --duration $(DEMO_SECONDS) --workdir $(DEMO)/up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q

test: lint unit

bench: install
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis

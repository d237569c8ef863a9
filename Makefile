# The README's commands. Everything runs from the project's own .venv, made on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
DEMO   := build/demo

.PHONY: install debian debian-bench demo test lint unit audit bench clean

install: $(STAMP) debian

# Debian programs the tests start (each its own process on a free loopback port), as
# command:package pairs; apt-get runs only when one is missing.
DEBIAN := redis-server:redis-server prometheus:prometheus promtool:prometheus \
	prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager git:git \
	buildah:buildah chromium:chromium nginx:nginx
# ... and those only `make bench` needs (bench/gateway.py, bench/monitor.py); `make test`
# never installs them
DEBIAN_BENCH := wrk:wrk prometheus-blackbox-exporter:prometheus-blackbox-exporter
define apt_missing
	@missing=$$(for pair in $(1); do \
		command -v $${pair%%:*} >/dev/null || echo $${pair#*:}; done); \
	if [ -n "$$missing" ]; then \
		echo "apt-get install $$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endef
debian:
	$(call apt_missing,$(DEBIAN))
debian-bench:
	$(call apt_missing,$(DEBIAN_BENCH))

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The batch half (two CSV files compared), then the stream half: `flowops up --demo` for
# DEMO_SECONDS on the embedded broker (ports 9092, 6066 and 8080), alerts printed as they come.
DEMO_SECONDS ?= 40
demo: $(STAMP)
	$(BIN)/python examples/sample_data.py $(DEMO)
	$(BIN)/flowops drift baseline --data $(DEMO)/reference.csv -o $(DEMO)/profile.json
	@# exit 1 means "drift found", which is what the demo data is made to show
	$(BIN)/flowops drift compare --reference $(DEMO)/profile.json --current $(DEMO)/current.csv \
		--html $(DEMO)/report.html || test $$? -eq 1
	$(BIN)/flowops up --demo --duration $(DEMO_SECONDS) --workdir $(DEMO)/up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q

test: debian lint unit

# Known vulnerabilities in what .venv holds (pip-audit; .ci/audit.py says why that tool).
# Exits 0 with "not checked: ..." when the advisory service cannot be reached.
audit: $(STAMP)
	$(BIN)/python .ci/audit.py -l

bench: install debian-bench
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/gateway_features.py
	$(BIN)/python bench/gateway_tls.py
	$(BIN)/python bench/gateway_trees.py
	$(BIN)/python bench/monitor.py
	$(BIN)/python bench/report.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis

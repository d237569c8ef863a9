# The README's commands. Everything runs from the project's own .venv, made on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
DEMO   := build/demo

.PHONY: install debian debian-bench demo test lint unit audit bench lock sizes clean

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

# Each role's packages, pinned with their hashes: lock/<role>.txt (`make lock` writes them
# again from pyproject.toml, keeping every pin that still fits; LOCK_ARGS=--upgrade moves
# them on). One file a role, not one file with markers: pip installs every line of a
# requirements file, and a marker can say "on Linux" but not "for the monitor". uv
# resolves for a target (Linux, CPython 3.11: the images' and CI's), not for the
# interpreter that runs it as pip-compile does, in about a second a file.
ROLES := core drift gateway worker monitor deploy local
LOCK_ARGS ?=
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes \
	--python-version 3.11 --python-platform linux --no-header --no-annotate
lock:
	@test -x $(BIN)/uv || { echo 'make lock needs uv in $(VENV) (the dev extra): make install'; exit 2; }
	$(UV_COMPILE) --extra dev $(LOCK_ARGS) -o lock/dev.txt
	@# every role pinned as dev is, so that what `make test` ran is what the images ship
	mkdir -p build && grep -Eo '^[A-Za-z0-9_.-]+==[^ ]+' lock/dev.txt > build/lock-pins.txt
	@for role in dev $(ROLES); do \
		extra=$$([ $$role = core ] || echo "--extra $$role"); \
		[ $$role = dev ] || $(UV_COMPILE) $$extra --constraint build/lock-pins.txt \
			-o lock/$$role.txt || exit 1; \
		sed -i "1i # flowops[$$role], pinned with hashes for Linux, CPython 3.11. Written by \`make lock\`." \
			lock/$$role.txt; \
		echo "lock/$$role.txt: $$(grep -c '==' lock/$$role.txt) packages"; \
	done

# The tests' and the demo's environment, installed from the lock (the same pins CI and
# the images use): its packages first, all hashes checked, then FlowOps itself, editable.
$(STAMP): pyproject.toml lock/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r lock/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# `make demo` needs only the local extra (no test tools, no MLflow, DVC or pyarrow): its
# own stamp, so that `make test` afterwards adds the rest to the same .venv.
DEMO_STAMP := $(VENV)/.stamp-demo
$(DEMO_STAMP): pyproject.toml lock/local.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r lock/local.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# The batch half (two CSV files compared), then the stream half: `flowops up --demo` for
# DEMO_SECONDS on the embedded broker (ports 9092, 6066 and 8080), alerts printed as they come.
DEMO_SECONDS ?= 40
demo: $(DEMO_STAMP)
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

# Installed size of each role: a fresh venv per extra from its lock file, du of its
# site-packages (bench/install_size.py; RESULTS.md keeps the figures).
sizes: $(STAMP)
	$(BIN)/python bench/install_size.py

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

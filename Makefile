# Two commands matter: `make demo` and `make test` (see README).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/readerstudy
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: demo test test-postgres install install-test serve migrate clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamp files re-run pip only when a requirements file changes.
$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

migrate: install
	$(BIN)/python manage.py migrate --noinput

## make demo: install, migrate, build the demo pool and accounts, serve on 127.0.0.1:8000 with a worker.
demo: migrate
	$(BIN)/python manage.py build_demo --i-know-this-is-a-demo
	HOST=$(HOST) PORT=$(PORT) scripts/serve-demo

## make test: the whole suite on SQLite (PostgreSQL tests skip loudly without a server).
test: install-test
	@scripts/ensure-test-tools
	$(BIN)/python -m pytest

## make test-postgres: the whole suite again on PostgreSQL at 127.0.0.1:5432 (skipped loudly if absent).
test-postgres: install-test
	@if $(BIN)/python scripts/service-available postgres "$(PG_URL)"; then \
		DATABASE_URL="$(PG_URL)" $(BIN)/python -m pytest; \
	else \
		echo "!!! SKIPPED: PostgreSQL suite - no server at $(PG_URL) !!!"; \
	fi

clean:
	rm -rf var .pytest_cache

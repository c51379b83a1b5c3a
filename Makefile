# Curator: `make run` starts everything on this machine; `make test` runs the whole suite.
# Both work on a fresh Debian machine with Python 3.11: they create .venv, install the pinned
# requirements, and install Debian's redis-server (and chromium for the browser tests) if missing.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
NPROC := $(shell nproc 2>/dev/null || echo 2)
REDIS_URL ?= redis://127.0.0.1:6379/0
export REDIS_URL
APT_GET := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)

.PHONY: run test lint setup system-redis system-chromium migrate ensure-redis workers web bench clean

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

setup: $(STAMP) var/secret_key

var/secret_key:
	@mkdir -p var
	@umask 077; $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > var/secret_key

system-redis:
	@command -v redis-server >/dev/null || { echo "Installing Debian's redis-server"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq redis-server >/dev/null; }

system-chromium:
	@test -x /usr/bin/chromium || { echo "Installing Debian's chromium"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq chromium >/dev/null; }

# Start a private Redis on the configured port when none answers there.
ensure-redis: setup
	@if $(BIN)/python -c "import redis,sys; redis.Redis.from_url('$(REDIS_URL)', socket_connect_timeout=1).ping()" 2>/dev/null; then \
		echo "Redis is reachable at $(REDIS_URL)"; \
	else \
		$(MAKE) --no-print-directory system-redis; \
		port=$$($(BIN)/python -c "from urllib.parse import urlparse; print(urlparse('$(REDIS_URL)').port or 6379)"); \
		mkdir -p var/redis; \
		redis-server --daemonize yes --bind 127.0.0.1 --port $$port --save "" --appendonly no \
			--dir $(CURDIR)/var/redis --logfile $(CURDIR)/var/redis/redis.log --pidfile $(CURDIR)/var/redis/redis.pid; \
		for i in $$(seq 50); do $(BIN)/python -c "import redis; redis.Redis.from_url('$(REDIS_URL)').ping()" 2>/dev/null && break; sleep 0.1; done; \
		echo "Started redis-server on port $$port (var/redis)"; \
	fi

migrate: setup
	DEBUG=1 SECRET_KEY=$$(cat var/secret_key) $(BIN)/python manage.py migrate --noinput

run: setup ensure-redis migrate
	@export SECRET_KEY=$$(cat var/secret_key) DEBUG=$${DEBUG:-1}; \
	$(BIN)/python manage.py ensure_admin; \
	$(BIN)/python manage.py load_demo --if-empty --ask; \
	mkdir -p var/log; \
	$(BIN)/celery -A curator worker -Q align -c $(NPROC) -n align@%h -l info --logfile var/log/worker-align.log & align=$$!; \
	$(BIN)/celery -A curator worker -Q import -c 1 -n import@%h -l info --logfile var/log/worker-import.log & import=$$!; \
	$(BIN)/celery -A curator worker -Q train -c 1 -n train@%h -l info --logfile var/log/worker-train.log & train=$$!; \
	$(BIN)/celery -A curator worker -Q embed -c $(NPROC) -n embed@%h -l info --logfile var/log/worker-embed.log & embed=$$!; \
	$(BIN)/celery -A curator worker -Q predict -c 1 -n predict@%h -l info --logfile var/log/worker-predict.log & predict=$$!; \
	$(BIN)/celery -A curator beat -l info --schedule var/celerybeat-schedule --logfile var/log/beat.log & beat=$$!; \
	echo "Workers: align ($(NPROC) processes), import (1), train (1), embed ($(NPROC)), predict (1), beat (stale-job sweep, orphan cleanup); logs in var/log/"; \
	echo "Curator: http://127.0.0.1:8000  (Ctrl-C stops the web server and the workers)"; \
	$(BIN)/python manage.py runserver 127.0.0.1:8000 --noreload & web=$$!; \
	trap 'kill $$web $$align $$import $$train $$embed $$predict $$beat 2>/dev/null; wait' EXIT INT TERM; \
	wait $$web

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# PostgreSQL at 127.0.0.1:5432 when it answers (CI), the SQLite file otherwise. Two test processes
# (pytest-xdist): most tests wait on workers, servers and the browser, so two overlap well even on
# two cores; TEST_PROCESSES=0 runs them in this one process.
TEST_PROCESSES ?= 2
test: setup ensure-redis system-chromium
	@$(BIN)/ruff check . && $(BIN)/ruff format --check . && echo "ruff: clean"
	@if [ -z "$$DATABASE_URL" ] && command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then \
		export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test; fi; \
	echo "Database: $${DATABASE_URL:-SQLite}"; \
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

bench: setup ensure-redis
	DEBUG=1 $(BIN)/python bench/align.py

clean:
	rm -rf $(VENV) var/staticfiles .pytest_cache .ruff_cache

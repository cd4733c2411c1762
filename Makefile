# Docket: `make run` starts everything, `make test` checks everything.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --quiet

.PHONY: run test lint fmt typecheck pytest bench clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit("Docket needs Python 3.11 or newer, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Docket is an application, not a package: install the dependencies pyproject.toml lists, nothing else.
REQUIREMENTS = $(PY) -c 'import sys, tomllib; project = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	print("\n".join(project["dependencies"] + sum((project["optional-dependencies"][x] for x in sys.argv[1:]), [])))'

$(VENV)/.installed: pyproject.toml | $(PY)
	$(REQUIREMENTS) > $(VENV)/requirements.txt
	$(PIP) install -r $(VENV)/requirements.txt
	@touch $@

$(VENV)/.dev-installed: pyproject.toml client/pyproject.toml | $(PY)
	$(REQUIREMENTS) dev > $(VENV)/requirements-dev.txt
	$(PIP) install -r $(VENV)/requirements-dev.txt
	# The remote CLI `docket` (client/, a package of its own that needs only httpx), for its tests.
	$(PIP) install -e ./client
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) manage.py ensure_var
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py ensure_login
	$(PY) manage.py serve

test: $(VENV)/.dev-installed lint typecheck pytest

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: $(VENV)/.dev-installed
	$(VENV)/bin/mypy .

# One pytest-xdist worker per core, each with its own test database, live server and Chromium. The slow
# tests start first (tests/conftest.py), and a worker that runs out takes tests queued on a busy one.
PYTEST_WORKERS ?= auto

pytest: $(VENV)/.dev-installed
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Two set-up commands on a fresh clone:  make demo   and   make test
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint pytest fuzz security-report bench clean

# make test also leaves a JUnit report and the fuzz suite's per-parser example counts here,
# from which `python -m tests.security_report` renders docs/security-testing.md.
REPORTS := .reports

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP) lint pytest

# pytest-xdist: one worker per core (2 on the project's machines); --dist loadfile keeps each test file
# on one worker, so module-scoped fixtures (a locked repo, a warm cache) are built once per file;
# --no-loadscope-reorder hands files out in collection order, which tests/conftest.py makes longest first.
# PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2

pytest: $(STAMP)
	mkdir -p $(REPORTS)
	SECUREHUB_FUZZ_STATS=$(REPORTS)/fuzz-stats.json $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		--junitxml=$(REPORTS)/junit.xml

# Many more random examples per parser than the deterministic `ci` profile make test uses.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -q tests/fuzz

# Runs the attack, fuzz, concurrency and crash suites, then writes docs/security-testing.md.
security-report: $(STAMP)
	$(PY) -m tests.security_report --run

lint: $(STAMP)
	$(VENV)/bin/ruff check securehub tests examples bench
	$(VENV)/bin/ruff format --check securehub tests examples bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info

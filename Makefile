# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment on first use (from constraints.txt, the tested lock).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.segpipe-installed
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: test test-gpu test-cluster test-all demo bench clean env

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,farm,bench]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu

# The farm on 127.0.0.1: a Prefect server, a Dask scheduler, an orchestrator and two workers,
# one SIGKILLed mid-scene (tests/flows/test_cluster*.py; about 6 minutes, most of it the
# three 90 s zombie windows the batch must outlive).
test-cluster: $(STAMP)
	$(PY) -m pytest -q -m cluster

test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

demo: $(STAMP)
	$(PY) -m data.demo

# MONAI (the reference the benchmarks compare with) and prefect-dask (bench_fanout's candidate
# engine) are the `bench` extra, which `make env` installs; the engine never imports them.
bench: $(STAMP)
	$(PY) bench/bench_scene.py --repeat 3

clean:
	rm -rf out demo-out data/generated .pytest_cache

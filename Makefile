# vqbench: `make bench` runs the default benchmark, `make test` runs the tests.
PYTHON ?= python
PIP := $(PYTHON) -m pip
# One stamp folder per interpreter (keyed on sys.prefix): a stamp written for one virtual environment
# must never let `make test` skip installing into another.
STAMP := .make/$(shell $(PYTHON) -c 'import hashlib, sys; print(hashlib.sha1(sys.prefix.encode()).hexdigest()[:12])')

.PHONY: install install-test bench test test-slow speed gpu-bundle gpu-check clean

# Dependencies go into the current Python. The stamp makes a second `make` quick; it is keyed on
# the requirement files, so editing one reinstalls.
$(STAMP)/install: requirements/base.txt requirements/codebooks.txt requirements/metrics.txt requirements/nodeps.txt
	$(PIP) install -q -r requirements/base.txt -r requirements/codebooks.txt -r requirements/metrics.txt
	$(PIP) install -q --no-deps -r requirements/nodeps.txt
	@mkdir -p $(STAMP) && touch $@

$(STAMP)/install-test: $(STAMP)/install requirements/test.txt
	$(PIP) install -q -r requirements/test.txt
	@mkdir -p $(STAMP) && touch $@

install: $(STAMP)/install
install-test: $(STAMP)/install-test

bench: install
	$(PYTHON) run_bench.py

test: install-test
	$(PYTHON) -m pytest -q --durations=25  # the slowest tests named in the log: the suite must stay under 20 min on 2 cores

test-slow: install-test
	$(PYTHON) -m pytest -q -m slow

# Needs the test dependencies: the peer implementations it compares against live there.
speed: install-test
	$(PYTHON) -m bench.speed

# The GPU bundle (bench/gpu/bundle.py): wheels and caches that the GPU check needs and the GPU machine
# (no network) lacks, for CPython $(PYVER). gpu_bundle/ is the GPU machine's (3.12); another PYVER builds
# gpu_bundle-py$(PYVER)/, so a rehearsal never replaces the bundle that travels. Run from the project's
# own environment (`make install`: it derives the FID weights and builds the VQCT prior when not cached).
PYVER ?= 3.12
GPU_BUNDLE ?= $(if $(filter 3.12,$(PYVER)),gpu_bundle,gpu_bundle-py$(PYVER))
gpu-bundle:
	$(PYTHON) -m bench.gpu.bundle --python-version $(PYVER) --out $(GPU_BUNDLE)

# `make gpu-check` is the CPU rehearsal of the GPU check: bench/gpu_check.sh, exactly as the GPU machine
# runs it, from a CPython $(REHEARSAL_PYVER) build of the bundle, in a venv that holds only the GPU image's
# packages that the project imports (requirements/gpu_image.txt; bench/gpu/image.py says which differ).
# On the GPU machine itself: `bash bench/gpu_check.sh` with gpu_bundle/ beside it (README, "GPU check").
REHEARSAL_PYVER ?= 3.11
REHEARSAL_PYTHON ?= python$(REHEARSAL_PYVER)
REHEARSAL_VENV := .venv-gpu-check
REHEARSAL_BUNDLE := gpu_bundle-py$(REHEARSAL_PYVER)
REHEARSAL_TMP := /tmp/vqbench-gpu-rehearsal

$(REHEARSAL_VENV)/installed: requirements/gpu_image.txt bench/gpu/image.py
	rm -rf $(REHEARSAL_VENV) && $(REHEARSAL_PYTHON) -m venv $(REHEARSAL_VENV)
	$(PYTHON) -m bench.gpu.image rehearsal $(REHEARSAL_PYVER) > $(REHEARSAL_VENV)/requirements.txt
	$(PYTHON) -m bench.gpu.image constraints $(REHEARSAL_PYVER) > $(REHEARSAL_VENV)/constraints.txt
	$(REHEARSAL_VENV)/bin/python -m pip install -q -r $(REHEARSAL_VENV)/requirements.txt -c $(REHEARSAL_VENV)/constraints.txt
	touch $@

$(REHEARSAL_BUNDLE)/MANIFEST: bench/gpu/bundle.py bench/gpu/fid_half.py requirements/gpu_image.txt
	$(MAKE) gpu-bundle PYVER=$(REHEARSAL_PYVER)

gpu-check: $(REHEARSAL_VENV)/installed $(REHEARSAL_BUNDLE)/MANIFEST
	rm -rf $(REHEARSAL_TMP)
	PYTHON=$(REHEARSAL_VENV)/bin/python GPU_BUNDLE=$(REHEARSAL_BUNDLE) GPU_CHECK_SITE=$(REHEARSAL_TMP)/site \
		VQBENCH_CACHE=$(REHEARSAL_TMP)/cache bash bench/gpu_check.sh

clean:
	rm -rf .make

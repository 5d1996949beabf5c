# vqbench: `make bench` runs the default benchmark, `make test` runs the tests.
PYTHON ?= python
PIP := $(PYTHON) -m pip
# One stamp folder per interpreter (keyed on sys.prefix): a stamp written for one virtual environment
# must never let `make test` skip installing into another.
STAMP := .make/$(shell $(PYTHON) -c 'import hashlib, sys; print(hashlib.sha1(sys.prefix.encode()).hexdigest()[:12])')

.PHONY: install install-test bench test test-slow speed gpu-check clean

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
	$(PYTHON) -m pytest -q

test-slow: install-test
	$(PYTHON) -m pytest -q -m slow

# Needs the test dependencies: the peer implementations it compares against live there.
speed: install-test
	$(PYTHON) -m bench.speed

# The GPU check (bench/gpu_check.sh): makes its own venv from $(PYTHON) and installs into it, so
# it does not depend on install-test here; results under $${OUT:-gpu_check/<time>}.
gpu-check:
	PYTHON=$(PYTHON) bash bench/gpu_check.sh

clean:
	rm -rf .make

# Attention Mechanisms, Hands-On. `make book` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
MATHJAX := book/_static/mathjax/tex-chtml.js
export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 3
# TensorFlow's oneDNN kernels and PyTorch's bundled oneDNN clash in one process (pages and tests load
# both): TF then returns wrong numbers or frees invalid pointers. tests/test_frameworks_together.py.
export TF_ENABLE_ONEDNN_OPTS := 0

.PHONY: help venv book exercises test test-fast lab system-deps lock clean

help:
	@echo "make book       build the HTML book into _build/html (creates .venv on first use)"
	@echo "make test       run the whole test suite (installs what it needs)"
	@echo "make test-fast  everything but the browser and the hostile gallery: the edit-test loop"
	@echo "make lab        open JupyterLab on the exercises"
	@echo "make exercises  regenerate the student notebooks from their masters in solutions/"

venv: $(INSTALLED)

# The venv is rebuilt when the lock or the package metadata changes.
$(INSTALLED): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==26.3
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# MathJax is served from the book itself: the npm registry's package, unpacked once.
$(MATHJAX):
	bash book/install_mathjax.sh

# The pages run with the thread settings of `make test` (OMP_NUM_THREADS=1, below): with two OpenMP
# threads per process on a shared 2-core machine, the PyTorch pages trained for 300-335 s, not seconds.
book: $(INSTALLED) $(MATHJAX)
	OMP_NUM_THREADS=1 $(VENV)/bin/jupyter-book build . --warningiserror --nitpick --keep-going

exercises: $(INSTALLED)
	$(PY) -m autograder assign

# Debian packages the suite needs: bubblewrap (the grader's sandbox) and chromium (browser test).
system-deps:
	@if ! command -v bwrap >/dev/null || ! command -v chromium >/dev/null; then \
	  echo "installing bubblewrap and chromium from Debian"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap chromium >/dev/null; \
	fi

# One OpenMP thread per test process: two xdist workers on two cores, each with two OpenMP threads
# that spin while they wait, ran small PyTorch operations up to 8x slower (chapter 05's training).
# The 15 slowest tests are listed at the end: the suite must stay within its budget (25 min with the book).
test: system-deps book
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile -q --durations=15

# The edit-test loop: no book build, no browser, no hostile gallery. CI runs `make test`.
test-fast: system-deps venv
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile -q -m "not browser and not gallery"

# Jupyter refuses to run as root without --allow-root (containers and CI machines often are root).
lab: $(INSTALLED)
	$(VENV)/bin/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) chapters/

# Regenerate requirements.txt from requirements.in in a scratch venv.
lock:
	rm -rf /tmp/lock-venv && $(PYTHON) -m venv /tmp/lock-venv
	/tmp/lock-venv/bin/pip install --quiet --upgrade pip==26.3
	/tmp/lock-venv/bin/pip install --quiet -r requirements.in
	/tmp/lock-venv/bin/pip freeze | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements.txt

clean:
	rm -rf _build

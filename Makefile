# The two commands of the README:
#   make run   set up .venv, create missing checkpoints, export and validate every model
#   make test  set up .venv, run the test-suite
# and the documentation site (docs/, mkdocs.yml): make docs
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
# torch is pinned here (dev/CI), not in pyproject.toml (which declares a range):
# 2.13.0 is the CPU build this machine installs from local disk.
TORCH  := torch==2.13.0

.PHONY: setup run test docs test-min typecheck checkpoints schemas clean

# The example plugin is installed as a copy (as a user would): its source is a prerequisite too.
$(STAMP): pyproject.toml Makefile examples/modelreg-torchscript/pyproject.toml $(wildcard examples/modelreg-torchscript/src/*/*.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check "hatchling>=1.27" editables
	# No build isolation: the build backend is already in the venv, so an
	# editable install needs no network beyond the package index.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation -e ".[dev,onnx]"
	# The example third-party exporter: the plugin tests find it by its entry point alone.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps ./examples/modelreg-torchscript
	touch $(STAMP)

setup: $(STAMP)

checkpoints: setup
	$(BIN)/modelreg init

run: checkpoints
	$(BIN)/modelreg export
	$(BIN)/modelreg validate

# Two workers (pytest-xdist): the C++ compiles and torch runs of one test overlap another's.
test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist worksteal

# The documentation site, into site/ (git-ignored). --strict: a broken link or anchor, or a
# page missing from mkdocs.yml's nav, fails the build (CI runs it). The environment variable
# silences mkdocs-material's banner about its successor (docs/decisions.md, "Documentation site").
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The layer parts of schemas/registry.schema.json and rtneural.schema.json come from
# the layer kinds (modelreg/layers/); rewrite them after adding or changing a kind
# (tests/test_layers.py fails while they are out of date).
schemas: setup
	$(BIN)/python -m modelreg.layers.compose

# The package ships py.typed: users' type checkers read its hints, so they are checked too.
typecheck: setup
	$(BIN)/python -m mypy

# The oldest dependency releases pyproject.toml admits (.ci/min-versions.txt), in a
# venv of their own, against the tests that exercise them (serialisation, schemas,
# registry, exporters, runtimes, plugins, checkpoints): a lower bound is a promise.
MIN_VENV := .venv-min
$(MIN_VENV)/.stamp-install: pyproject.toml Makefile .ci/min-versions.txt $(wildcard examples/modelreg-torchscript/src/*/*.py)
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/pip install --quiet --disable-pip-version-check $(TORCH) "hatchling>=1.27" editables
	$(MIN_VENV)/bin/pip install --quiet --disable-pip-version-check --no-build-isolation \
		-c .ci/min-versions.txt -e ".[dev,onnx]"
	$(MIN_VENV)/bin/pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps ./examples/modelreg-torchscript
	touch $@

test-min: $(MIN_VENV)/.stamp-install
	$(MIN_VENV)/bin/python -m pip list --disable-pip-version-check 2>/dev/null \
		| grep -iE '^(numpy|attrs|jsonschema|tomli.w|orjson|filelock|safetensors|onnx|onnxruntime|torch) '
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_packaging.py \
		tests/test_rtneural_format.py tests/test_rtneural_runtime.py tests/test_exporting.py \
		tests/test_registry.py tests/test_bad_registries.py tests/test_plugins.py tests/test_checkpoint.py \
		tests/test_fast_check.py

clean:
	rm -rf $(VENV) $(MIN_VENV) dist build site .pytest_cache .hypothesis

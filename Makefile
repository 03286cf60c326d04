# The two commands of the README:
#   make run   set up .venv, create missing checkpoints, export and validate every model
#   make test  set up .venv, run the test-suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
# torch is pinned here (dev/CI), not in pyproject.toml (which declares a range):
# 2.13.0 is the CPU build this machine installs from local disk.
TORCH  := torch==2.13.0

.PHONY: setup run test checkpoints clean

$(STAMP): pyproject.toml Makefile examples/modelreg-torchscript/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check "hatchling>=1.18" editables
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

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) dist build .pytest_cache .hypothesis

# Two entry points for a fresh machine (Python 3.11 + pip): `make course` and `make test`.
# Both create .venv when it is missing and install the package with what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
OUT ?= lectures

.PHONY: course test setup notebooks clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch/torchvision pinned together for this machine; the package itself accepts other versions.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

# Main job: render every chapter with papermill (profile $(PROFILE)) to executed notebooks and HTML in $(OUT).
course: setup
	$(BIN)/python -m vos_lab lectures --profile $(PROFILE) --out $(OUT)

# The chapter notebooks from their sources notebooks/src/NN_*.py (jupytext percent format), without outputs.
notebooks: setup
	$(BIN)/python notebooks/build.py

# Whole test suite: unit tests, ruff, and every notebook executed by nbval in the smoke profile.
test: setup
	$(BIN)/ruff check vos_lab tests data_scripts notebooks
	VOS_LAB_PROFILE=smoke $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider --durations=10

clean:
	rm -rf $(VENV) $(OUT)

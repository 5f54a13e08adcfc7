# Two entry points for a fresh machine (Python 3.11 + pip): `make course` and `make test`.
# Both create .venv when it is missing and install the package with what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
OUT ?= lectures

.PHONY: course test setup chromium notebooks zoo clean

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

# The model zoo: every chapter's checkpoint of profile $(PROFILE), trained once (resumes; reuses what is done).
zoo: setup
	$(BIN)/python -m vos_lab zoo build --profile $(PROFILE)

# The chapter notebooks from their sources notebooks/src/NN_*.py (jupytext percent format), without outputs.
notebooks: setup
	$(BIN)/python notebooks/build.py

# Chromium for the browser tests (tests/test_browser.py): the distribution's package, installed when missing and
# we are root with apt-get; otherwise one line says how (the browser tests then fail saying the same).
chromium:
	@[ -n "$$VOS_LAB_CHROMIUM" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && echo "installing chromium (apt-get) for the browser tests" \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	echo "note: no Chromium for the browser tests: install it as root with 'apt-get install -y chromium'"

# Whole test suite: unit tests, ruff, every notebook executed by nbval in the smoke profile, the browser tests.
test: setup chromium
	$(BIN)/ruff check vos_lab tests data_scripts notebooks
	VOS_LAB_PROFILE=smoke $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider --durations=10

clean:
	rm -rf $(VENV) $(OUT)

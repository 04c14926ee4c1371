# The verbs of the project. `make test` and `make demo` set everything up on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A CPU build of torch; on a CUDA server use `make setup TORCH=torch` or the conda environment.
TORCH ?= torch==2.13.0
RUN ?= demo
# Figures to files, no windows, for the verbs that run headless; never for `make lab`, whose kernels
# show figures inline (a user's own notebook without %matplotlib inline included).
HEADLESS := test data demo bench browser-test checked-outputs
$(HEADLESS): export MPLBACKEND := Agg

.PHONY: setup test lint notebooks checked-outputs demo data train bench lab clean browser-test docs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

test: setup
	$(BIN)/python -m pytest --nbval-lax tests notebooks

# ruff over the package, tests, benchmarks, tools and the notebooks' paired scripts, mypy over the package, and
# import-linter's layers contract: each floor of the package imports only from those below (all in pyproject.toml).
lint: setup
	$(BIN)/ruff check spectra_vae tests benchmarks tools notebooks
	$(BIN)/mypy
	$(BIN)/lint-imports

# After editing a notebook's .py outside JupyterLab (or its .ipynb without the jupytext extension):
# bring each pair in step from whichever file is newer.
notebooks: setup
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.ipynb

# After a deliberate change to what a `# NBVAL_CHECK_OUTPUT` cell prints (e.g. the demo generator).
checked-outputs: setup
	$(BIN)/python tools/store_checked_outputs.py

data: setup
	$(BIN)/python -m spectra_vae demo-data --out data/demo

# reports/demo is the demo's fixed run: replaced on purpose each time (--overwrite).
demo: setup
	$(BIN)/python -m spectra_vae pipeline --out reports/$(RUN) --overwrite

# Real-browser test: Debian's chromium driven by Playwright (browsers are never downloaded).
browser-test: setup
	$(BIN)/python -m pip install --quiet "playwright>=1.40"
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "could not install Debian's chromium (the test will say it skipped)"
	$(BIN)/python tools/browser_test.py

# The documentation site (mkdocs.yml, docs/), built strictly: a broken link or reference fails. The docs extra
# (MkDocs, Material, mkdocstrings) is installed on first use, like playwright above.
docs: setup
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict

bench: setup
	$(BIN)/python -m benchmarks

lab: setup
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf reports/demo data/demo data/demo_scattered models .pytest_cache site

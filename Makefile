# haocha — 政务服务“好差评”分析. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CITY ?= zibo
PERIOD ?= 2023Q2
KERNEL := haocha

.DEFAULT_GOAL := help
.PHONY: help setup system-deps bulletin test test-fast lint format bench lab evaluate-detectors clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-20s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "haocha (Python 3)" >/dev/null
	@touch $(STAMP)

system-deps: ## Install the CJK font and Pango (as root), or say what to install
	@bash scripts/system-deps.sh

setup: system-deps $(STAMP) ## Create .venv, install the project and register the Jupyter kernel "haocha"

bulletin: setup ## Produce the default bulletin (synthetic 淄博 2023Q2) into reports/$(CITY)/$(PERIOD)/
	$(VENV)/bin/haocha bulletin --city $(CITY) --period $(PERIOD)

test: setup ## Run the whole test suite
	$(PY) -m pytest -q

test-fast: setup ## Run the suite without the full-scale tests
	$(PY) -m pytest -q -m "not slow"

lint: setup ## ruff lint + format check; fail on notebooks committed with outputs
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) scripts/check_notebooks.py notebooks
	$(VENV)/bin/lint-imports

format: setup ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup ## Benchmarks of every stage (not part of make test); writes reports/bench/
	$(VENV)/bin/haocha bench --out reports/bench

evaluate-detectors: setup ## Detectors against truth.json: default scenario, then realistic over 5 seeds
	$(VENV)/bin/haocha evaluate-detectors --city $(CITY) --period $(PERIOD)
	$(VENV)/bin/haocha evaluate-detectors --city $(CITY) --period $(PERIOD) --scenario realistic --seeds 0-4

lab: setup ## JupyterLab with the project's kernel
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

clean: ## Remove generated reports and caches (keeps .venv)
	rm -rf reports/*/ .pytest_cache .ruff_cache

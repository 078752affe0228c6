# haocha — 政务服务“好差评”分析. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CITY ?= zibo
PERIOD ?= 2023Q2
KERNEL := haocha

.DEFAULT_GOAL := help
.PHONY: help setup system-deps bulletin test test-fast lint format bench lab evaluate-detectors clean clean-data

help: ## 列出全部目标
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-20s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "haocha (Python 3)" >/dev/null
	@touch $(STAMP)

system-deps: ## 安装中文字体、Pango 与 HarfBuzz 子集库（root），否则给出安装命令
	@bash scripts/system-deps.sh

setup: system-deps $(STAMP) ## 建立 .venv，安装本项目并注册 Jupyter 内核 "haocha"

bulletin: setup ## 用内置合成数据生成默认通报（淄博 2023Q2）到 reports/$(CITY)/$(PERIOD)/
	$(VENV)/bin/haocha bulletin --city $(CITY) --period $(PERIOD)

test: setup ## 运行全部测试
	$(PY) -m pytest -q

test-fast: setup ## 运行测试（跳过全规模的慢测试）
	$(PY) -m pytest -q -m "not slow"

lint: setup ## ruff 检查与格式检查、notebook 规则、分层导入约定（import-linter）
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) scripts/check_notebooks.py notebooks
	$(VENV)/bin/lint-imports

format: setup ## 自动修正并格式化代码
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup ## 各阶段基准测试（不属于 make test），写出 reports/bench/
	$(VENV)/bin/haocha bench --out reports/bench

evaluate-detectors: setup ## 异常检测对照 truth.json：默认场景，再用 realistic 场景跑 5 个种子
	$(VENV)/bin/haocha evaluate-detectors --city $(CITY) --period $(PERIOD)
	$(VENV)/bin/haocha evaluate-detectors --city $(CITY) --period $(PERIOD) --scenario realistic --seeds 0-4

lab: setup ## 以 haocha 内核启动 JupyterLab（root 身份时自动加 --allow-root）
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

clean: ## 删除生成的报告与缓存（保留 .venv 与内置合成数据）
	rm -rf reports/*/ .pytest_cache .ruff_cache

clean-data: ## 删除内置合成数据 data/synthetic/（下次使用时按季度重新生成）
	rm -rf data/synthetic/

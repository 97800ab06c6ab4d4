# Two commands for a fresh machine:  `make demo`  and  `make test`.
# Both make their own virtual env in .venv (torch pinned and installed first: an
# unpinned torch would pull a multi-GB CUDA build); `make test` adds requirements-dev.txt.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DEMO_MINUTES ?= 6

.PHONY: venv dev demo test gpu-check clean

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	touch $@

# the tests' extra tools (pytest, tokenizers, transformers), after requirements.txt
dev: $(VENV)/.installed-dev
$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

# The whole pipeline: stories -> tokens -> model -> stories, then the paper's evaluations.
# The stories are real ones, a slice of TinyStories V2 (the first 20 MB of its train file and
# 2 MB of its valid file, from the hub at HF_ENDPOINT); without it, the offline story generator's.
# About 10 minutes on 2 cores (training takes DEMO_MINUTES). diversity.py's completions are kept
# to 63 new tokens so that its 40 of them take seconds (the 256-token context would allow more).
demo: venv
	$(PY) prepare.py config/cpu_tiny.py --source=tinystories-v2-20mb --data_dir=data/demo \
	  || { echo "note: no TinyStories from the hub (the error above): the demo goes on with the offline story generator's stories"; \
	       $(PY) generate_data.py --backend=offline --num_stories=50000 --stories_dir=data/demo_stories \
	       && $(PY) prepare.py config/cpu_tiny.py --source=data/demo_stories --data_dir=data/demo; }
	$(PY) train.py config/cpu_tiny.py --data_dir=data/demo --out_dir=out/demo --max_minutes=$(DEMO_MINUTES) --overwrite
	$(PY) sample.py --out_dir=out/demo --num_samples=2 --start="Once upon a time"
	$(PY) grade.py --out_dir=out/demo --probes
	$(PY) diversity.py --out_dir=out/demo --num_stories=40 --max_new_tokens=63
	$(PY) interpret.py --out_dir=out/demo --num_stories=100
	@echo "reports: out/demo/grade/probes.json, out/demo/diversity/, out/demo/interpret/report.html"

# The report test renders HTML in Debian's chromium; without root it skips with a message.
test: dev
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "note: could not install chromium; the report rendering test will skip"
	$(PY) -m pytest -q tests

# The first command on a GPU machine: the CUDA tests (tests/test_cuda.py, ~2 minutes), then the
# training step at ts_33m and ts_1m against the nanoGPT-style reference and decoding with the KV
# cache, printed as one table (under 5 minutes in all). It uses the venv when there is one, else
# the machine's own python3 and torch: no package registry, no openai; pytest if installed.
GPU_PY = $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	@if ! $(GPU_PY) -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then \
	  echo "gpu-check: skipped: $(GPU_PY) has no torch that sees a CUDA GPU"; exit 0; fi; \
	status=0; \
	if $(GPU_PY) -c 'import pytest' 2>/dev/null; then $(GPU_PY) -m pytest -q -s tests/test_cuda.py || status=1; \
	else PYTHONPATH=. $(GPU_PY) tests/test_cuda.py || status=1; fi; \
	$(GPU_PY) bench.py --device=cuda --only=train_step_gpu,sample_gpu --gpu_shapes=ts_33m,ts_1m \
	  --windows=256 --gpu_variants=auto --table || status=1; \
	exit $$status

clean:
	rm -rf data/demo data/demo_stories out/demo

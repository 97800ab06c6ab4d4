# Two commands for a fresh machine:  `make demo`  and  `make test`.
# Both make their own virtual env in .venv (torch pinned and installed first: an
# unpinned torch would pull a multi-GB CUDA build).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DEMO_MINUTES ?= 6

.PHONY: venv demo test clean

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	touch $@

# The whole pipeline on data made here, no network: stories -> tokens -> model -> stories,
# then the paper's evaluations. About 10 minutes on 2 cores (training takes DEMO_MINUTES).
demo: venv
	$(PY) generate_data.py --backend=offline --num_stories=50000 --stories_dir=data/demo_stories
	$(PY) prepare.py config/cpu_tiny.py --source=data/demo_stories --data_dir=data/demo
	$(PY) train.py config/cpu_tiny.py --data_dir=data/demo --out_dir=out/demo --max_minutes=$(DEMO_MINUTES)
	$(PY) sample.py --out_dir=out/demo --num_samples=2 --start="Once upon a time"
	$(PY) grade.py --out_dir=out/demo --probes
	$(PY) diversity.py --out_dir=out/demo --num_stories=40 --max_new_tokens=150
	$(PY) interpret.py --out_dir=out/demo --num_stories=100
	@echo "reports: out/demo/grade/probes.json, out/demo/diversity/, out/demo/interpret/report.html"

# The report test renders HTML in Debian's chromium; without root it skips with a message.
test: venv
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "note: could not install chromium; the report rendering test will skip"
	$(PY) -m pytest -q tests

clean:
	rm -rf data/demo data/demo_stories out/demo

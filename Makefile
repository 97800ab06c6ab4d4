# Two commands for a fresh machine:  `make demo`  and  `make test`.
# Both make their own virtual env in .venv (torch pinned and installed first: an
# unpinned torch would pull a multi-GB CUDA build).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: venv demo test clean

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	touch $@

test: venv
	$(PY) -m pytest -q tests

clean:
	rm -rf data/demo* out/demo*

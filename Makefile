# Two commands do all the set-up: `make demo` and `make test`. Each creates (or reuses) .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/demo

.PHONY: demo test notebooks venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

demo: venv
	MPLBACKEND=Agg $(BIN)/gluon-ssd demo --out $(OUT)

test: venv
	MPLBACKEND=Agg $(BIN)/python -m pytest -q tests

notebooks: venv  # execute the tutorials and commit them with their outputs
	$(BIN)/python tools/notebooks.py

clean:
	rm -rf $(VENV) runs

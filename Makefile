# Two entry points for a fresh machine; each creates .venv and installs what it needs.
#   make study   run the whole study (small real configuration) end to end
#   make test    run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/small.yaml

.PHONY: study smoke test install

$(BIN)/mixstudy: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[pipeline,test]'
	touch $@

install: $(BIN)/mixstudy

study: install
	PATH=$(abspath $(BIN)):$$PATH snakemake --cores all --resources gpu=1 --rerun-incomplete --configfile $(CONFIG)

smoke:
	$(MAKE) study CONFIG=config/smoke.yaml

test: install
	PATH=$(abspath $(BIN)):$$PATH pytest -q

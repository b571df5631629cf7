# Two entry points for a fresh machine; each creates .venv and installs what it needs.
#   make study   run the whole study (small real configuration) end to end
#   make test    run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/first.yaml
# Training-job slots: one per GPU; on a machine without one, one single-thread job per core
# (measured faster than one multi-thread job at a time, docs/performance.md).
GPUS := $(shell nvidia-smi -L 2>/dev/null | grep -c GPU)
SLOTS ?= $(if $(filter-out 0,$(GPUS)),$(GPUS),$(shell nproc))

.PHONY: study smoke test install slurm-deps

$(BIN)/mixstudy: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[pipeline,test,cluster]'
	touch $@

install: $(BIN)/mixstudy

# While the workflow runs, `mixstudy progress` prints every minute which stage runs, how many runs
# are left and an estimate of the time left.
study: install
	export PATH=$(abspath $(BIN)):$$PATH; \
	mixstudy progress --params $(CONFIG) --watch 60 & watcher=$$!; \
	snakemake --cores all --resources gpu=$(SLOTS) --rerun-incomplete --configfile $(CONFIG); status=$$?; \
	kill $$watcher 2>/dev/null; exit $$status

smoke:
	$(MAKE) study CONFIG=config/smoke.yaml

# SLURM and munge for the cluster test (tests/test_slurm.py), from apt, only where missing (about 18 s).
slurm-deps:
	@command -v slurmctld >/dev/null || [ -x /usr/sbin/slurmctld ] || { [ "$$(id -u)" = 0 ] || { echo "make test needs slurm-wlm and munge (tests/test_slurm.py): run as root or install them" >&2; exit 1; }; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge; }

# Two workers, one test file each (-n 2 --dist loadfile): while the cluster test waits on the
# scheduler, the other worker runs other files. `.ci/run` on a fresh clone: 11.5-12 min, install included.
test: install slurm-deps
	PATH=$(abspath $(BIN)):$$PATH pytest -q -n 2 --dist loadfile

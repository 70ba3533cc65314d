.PHONY: demo demo-tiny test install

# Test workers (pytest-xdist): each test runs on one thread, so one worker per core.
TEST_WORKERS ?= 2

install:
	bash scripts/bootstrap.sh

demo: install
	.venv/bin/moalign demo

demo-tiny: install
	.venv/bin/moalign demo --tiny

test: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=25

.PHONY: install check fmt test audit bench reliability-long load-mixed

install:
	pip install -e '.[test]'

check:
	ruff check src tests bench
	ruff format --check src tests bench
	mypy

fmt:
	ruff format src tests bench
	ruff check --fix src tests bench

test:
	pytest

audit:
	teamboard db audit

bench:
	python -m bench.harness --workers 2 --duration 10 --connections 64

# The reliability suites' long profile (fuzzing, role matrix, faults): minutes to hours.
reliability-long:
	TEAMBOARD_TEST_PROFILE=long pytest tests/reliability -p no:cacheprovider

# Reads, lists, writes, GraphQL and the SSE feed together for 60 s (issue 7, point 6).
load-mixed:
	python -m bench.mixed_load --duration 60 --connections 32 --teams 20 --subscribers 2

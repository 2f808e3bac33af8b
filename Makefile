.PHONY: install check fmt test audit bench

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

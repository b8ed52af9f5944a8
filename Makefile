# Shortcuts for the scripts in scripts/ (the README's commands work without make).
.PHONY: run test bootstrap openapi format bench
run:
	./scripts/run
test:
	./scripts/test
bootstrap:
	./scripts/bootstrap
openapi: bootstrap
	.venv/bin/kerbside openapi
format: bootstrap
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .
bench:
	./scripts/bench

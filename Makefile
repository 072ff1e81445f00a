# The two commands of the README. Both work on a fresh Debian 12 machine as root.
.PHONY: test deps

deps:
	bash scripts/install-deps

# Installs the system and Python packages, then runs tox (tests, lint, types).
test: deps
	tox

# The two commands of the README. Both work on a fresh Debian 12 machine as root.
.PHONY: test deps demo

deps:
	bash scripts/install-deps

# Installs the system and Python packages, then runs tox (tests, lint, types).
test: deps
	tox

# The whole stack on loopback: S3, IMS, tgtd, DNS, the marshal; a real image read back.
DEMO_VENV ?= .demo-venv
demo: deps
	test -x $(DEMO_VENV)/bin/python || python3 -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[demo]'
	$(DEMO_VENV)/bin/sbpsctl demo $(DEMO_ARGS)

# The two commands of the README. Both work on a fresh Debian 12 machine as root.
.PHONY: test deps demo demo-shell

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

# A shell with sbpsctl on PATH, bound to the newest running demo's configuration.
demo-shell:
	@env=$$(ls -td /tmp/sbps-demo-*/env.sh 2>/dev/null | head -n 1); \
	test -n "$$env" || { echo "no running demo: start one with make demo"; exit 1; }; \
	exec bash --rcfile "$$env" -i

# Two commands on a fresh machine:  make demo  (train on MNIST, write figures)  and  make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  # extra options: make demo ARGS="--threads 1"
	$(BIN)/vaelab train --name mnist-demo-$$(date +%Y%m%d-%H%M%S) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks run

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

# Everything installs into a local virtual environment from PyPI; nothing else is needed.
PYTHON ?= python3
VENV ?= .venv
FER_DATA_DIR ?= ../shared/data
BIN := $(VENV)/bin
export FER_DATA_DIR

.PHONY: install demo evaluate test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The main job on the embedded default (SQLite, local processes, no servers).
demo: install
	$(BIN)/fer annotate $(FER_DATA_DIR)/photos

# Evaluate the committed seed model on FER2013 PublicTest.
evaluate: install
	$(BIN)/fer model evaluate --model seed --data $(FER_DATA_DIR)/fer2013 --split val --out out/seed-evaluation

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) out *.egg-info

# Python packages install into a local virtual environment from PyPI; `make test` also needs Chromium (below).
PYTHON ?= python3
VENV ?= .venv
FER_DATA_DIR ?= ../shared/data
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export FER_DATA_DIR

.PHONY: install demo evaluate test test-fast chromium bench bench-peer bench-scale clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The main job in local mode, the default (SQLite, local processes, no servers).
demo: install
	$(BIN)/fer annotate $(FER_DATA_DIR)/photos

# Evaluate the default model on FER2013 PublicTest.
evaluate: install
	$(BIN)/fer model evaluate --model default --data $(FER_DATA_DIR)/fer2013 --split val --out out/default-evaluation

# Throughput against the `fer` package (in its own venv, .bench/fer-peer); prints the figures last.
bench: install bench-peer
	$(BIN)/python bench/classifier.py
	$(BIN)/python bench/pipeline.py --peer-python .bench/fer-peer/bin/python
	$(BIN)/python bench/ratio.py --peer-python .bench/fer-peer/bin/python

bench-peer: .bench/fer-peer/.installed

# Every nightly command on an archive database of 1,000,000 annotated images against 100,000, on SQLite and
# PostgreSQL (builds the databases and a tree of hard links under /tmp/fer-scale, removed at the end).
bench-scale: install
	$(BIN)/python bench/scale.py

.bench/fer-peer/.installed:
	$(PYTHON) -m venv .bench/fer-peer
	.bench/fer-peer/bin/pip install --quiet --no-deps fer==25.10.3
	.bench/fer-peer/bin/pip install --quiet 'tensorflow-cpu==2.21.*' opencv-contrib-python==4.14.0.94 pandas requests tqdm Pillow matplotlib 'setuptools<81'
	touch $@

test: install chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The edit loop: the tests not marked slow. They need no data under FER_DATA_DIR, no PostgreSQL, Redis, RabbitMQ or
# Chromium, start no workers, train nothing and load no committed model through TensorFlow (tests/fast_lane.py).
test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

# The HTML report tests render the page in headless Chromium (Debian's package), installed here when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if command -v apt-get >/dev/null 2>&1; then \
		echo "chromium not found: installing Debian's chromium package with $(SUDO) apt-get (for the tests that render the HTML report)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium not found and no apt-get: the tests that render the HTML report in a browser will skip"; \
	fi

clean:
	rm -rf $(VENV) out *.egg-info

# Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
export MALLOC_MMAP_THRESHOLD_ := 268435456
export MALLOC_TRIM_THRESHOLD_ := 1073741824
export PYTHONUNBUFFERED := 1

.PHONY: demo test install data models app bench clean

.venv/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

install: .venv/.installed

data: install
	.venv/bin/atinuke prepare-data

runs/pretrain/tiny-mlm/model/config.json: | data
	.venv/bin/atinuke pretrain --preset tiny --objective mlm --out runs/pretrain/tiny-mlm

models: data runs/pretrain/tiny-mlm/model/config.json

app:
	.venv/bin/streamlit run app.py --server.address 127.0.0.1 --server.headless true

demo: models app

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/train_throughput.py --quick

clean:
	rm -rf .venv runs

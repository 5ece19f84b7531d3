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

# An interrupted pretraining run left checkpoints behind: continue it exactly instead of starting over.
runs/pretrain/tiny-mlm/model/config.json: | data
	if [ -d runs/pretrain/tiny-mlm/checkpoints ]; then \
	  .venv/bin/atinuke pretrain --out runs/pretrain/tiny-mlm --resume; \
	else \
	  .venv/bin/atinuke pretrain --preset tiny --objective mlm --out runs/pretrain/tiny-mlm; \
	fi

# Each artifact is built only when absent (order-only prerequisites): `make demo` never retrains.
# Fine-tune both models on every diagnostic task (a task already done is skipped).
runs/finetune/summary.csv: | runs/pretrain/tiny-mlm/model/config.json
	$(PY) -m atinuke.finetune_all --atinuke runs/pretrain/tiny-mlm --out runs/finetune

runs/probes/minilm/pos/results.parquet: | install
	.venv/bin/probes run --model minilm --task pos --controls --seeds 3 --out runs/probes/minilm/pos

runs/probes/tiny-mlm/pos/results.parquet: | runs/pretrain/tiny-mlm/model/config.json
	.venv/bin/probes run --model runs/pretrain/tiny-mlm --task pos --controls --seeds 3 --out runs/probes/tiny-mlm/pos

runs/attributions/atinuke-snli/attributions.parquet: | runs/finetune/summary.csv
	.venv/bin/workbench attribute --model runs/finetune/atinuke/snli --task snli --method integrated_gradients,saliency,attention --limit 40 --out runs/attributions/atinuke-snli

runs/attributions/minilm-snli/attributions.parquet: | runs/finetune/summary.csv
	.venv/bin/workbench attribute --model runs/finetune/minilm/snli --task snli --method integrated_gradients,saliency,attention --limit 40 --out runs/attributions/minilm-snli

models: data runs/pretrain/tiny-mlm/model/config.json runs/finetune/summary.csv \
	runs/probes/minilm/pos/results.parquet runs/probes/tiny-mlm/pos/results.parquet \
	runs/attributions/atinuke-snli/attributions.parquet runs/attributions/minilm-snli/attributions.parquet

app:
	.venv/bin/streamlit run app.py --server.address 127.0.0.1 --server.headless true

demo: models app

test: install
	$(PY) -m pytest -q

# On a busy 2-core machine one thread per process gives the steadiest ratios.
bench: install
	OMP_NUM_THREADS=1 $(PY) bench/train_throughput.py --quick
	OMP_NUM_THREADS=1 $(PY) bench/finetune.py --quick
	OMP_NUM_THREADS=1 $(PY) bench/attribution.py
	OMP_NUM_THREADS=1 $(PY) bench/probes.py
	OMP_NUM_THREADS=1 $(PY) bench/app_pages.py

clean:
	rm -rf .venv runs

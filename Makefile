# Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
export MALLOC_MMAP_THRESHOLD_ := 268435456
export MALLOC_TRIM_THRESHOLD_ := 1073741824
export PYTHONUNBUFFERED := 1
# Human-labelled benchmark files (docs/tasks.md, `atinuke data list`): used wherever ATINUKE_DATA names them.
ifdef ATINUKE_DATA
export ATINUKE_DATA
endif

.PHONY: demo test install data models pretrained experiment app bench clean

.venv/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

install: .venv/.installed

# Two `make demo` at once: the second waits for the first's data step (a lock), then finds everything made.
data: install
	mkdir -p runs
	flock runs/.data.lock .venv/bin/atinuke prepare-data

# The controlled experiment (docs/experiment.md): Atinuke and its same-budget BERT baseline pretrained from
# scratch (one seed each for the demo), then both and the pretrained MiniLM reference fine-tuned on every
# task. `atinuke experiment` skips what exists and resumes what was interrupted, so this is cheap to rerun.
# Two units at a time, one process and one torch thread each: these small models use a second thread poorly.
# `--tasks demo` (docs/experiment.md): the real tasks where ATINUKE_DATA has them (cola, mrpc, sts, sick, gap),
# the registry-real VADER movie snippets always, silver where nothing else exists (snli, which the attribution
# and patching below use, squad2, srl; stsb and coref without ATINUKE_DATA).
EXPERIMENT := runs/experiment
# --overwrite: a build from before (or without) ATINUKE_DATA had other tasks; its finished runs are reused.
EXPERIMENT_FLAGS := --arms atinuke,bert,minilm --seeds 1 --tasks demo --scale tiny --jobs 2 --out $(EXPERIMENT) \
  --data auto $(if $(ATINUKE_DATA),--data-dir $(ATINUKE_DATA)) --overwrite
ATINUKE_RUN := $(EXPERIMENT)/atinuke/seed0
BERT_RUN := $(EXPERIMENT)/bert/seed0
MINILM_RUN := $(EXPERIMENT)/minilm/seed0

# Phony targets that the rules needing the experiment's models wait for (order-only): each runs once per
# `make` (a no-op when everything exists), so an interrupted experiment is always resumed, and `make -j2`
# never starts it twice. `pretrained` is the pretraining units alone (copies of the shipped runs), so that
# the analyses of the pretrained models run beside the fine-tuning instead of after it. Every other rule
# waits for `pretrained` too (seconds), so that `make -j2` starts the experiment, the longest job, first.
pretrained: data
	.venv/bin/atinuke experiment $(EXPERIMENT_FLAGS) --pretrain-only

experiment: pretrained
	.venv/bin/atinuke experiment $(EXPERIMENT_FLAGS)

# The learning-rate sweep behind the tiny recipe (atinuke/checkpoints/tiny-lr-sweep/README.md has the command
# that reruns it, ~12 min): copied, as the shipped pretraining runs are; `workbench claims` cites it.
runs/lr-sweep/best.json: | pretrained
	mkdir -p runs/lr-sweep
	cp atinuke/checkpoints/tiny-lr-sweep/sweep.json atinuke/checkpoints/tiny-lr-sweep/results.csv \
	  atinuke/checkpoints/tiny-lr-sweep/README.md runs/lr-sweep/
	cp atinuke/checkpoints/tiny-lr-sweep/best.json runs/lr-sweep/

# POS probes: gold UD English EWT tags where ATINUKE_DATA holds ud_ewt/ (`probes run`'s default), else
# spaCy's silver tags; the results' `source` column says which.
runs/probes/minilm/pos/results.parquet: | pretrained
	.venv/bin/probes run --model minilm --task pos --controls --seeds 3 --resume --out runs/probes/minilm/pos

runs/probes/atinuke-seed0/pos/results.parquet: | pretrained
	.venv/bin/probes run --model $(ATINUKE_RUN)/pretrain --task pos --controls --seeds 3 --resume --out runs/probes/atinuke-seed0/pos

runs/probes/bert-seed0/pos/results.parquet: | pretrained
	.venv/bin/probes run --model $(BERT_RUN)/pretrain --task pos --controls --seeds 3 --resume --out runs/probes/bert-seed0/pos

# The last jobs of the build (they wait for the whole experiment): every core, not the build's one thread each.
runs/attributions/atinuke-snli/attributions.parquet: | experiment
	OMP_NUM_THREADS=$$(nproc) .venv/bin/workbench attribute --model $(ATINUKE_RUN)/finetune/snli --task snli --method integrated_gradients,saliency,attention --limit 40 --out runs/attributions/atinuke-snli --evaluate

runs/attributions/minilm-snli/attributions.parquet: | experiment
	OMP_NUM_THREADS=$$(nproc) .venv/bin/workbench attribute --model $(MINILM_RUN)/finetune/snli --task snli --method integrated_gradients,saliency,attention --limit 40 --out runs/attributions/minilm-snli --evaluate

# Dictionary features: a TopK SAE on each residual stream, beside one trained identically on a random-init copy.
SAE_FLAGS := --width 2048 --k 16 --lr 1e-3 --batch-size 1024 --steps 600 --max-tokens 100000 --eval-texts 200 --no-progress

runs/sae/atinuke-seed0-resid1/metrics.json: | pretrained
	.venv/bin/workbench sae train --model $(ATINUKE_RUN)/pretrain --hook blocks.1.hook_resid_post $(SAE_FLAGS) --out runs/sae/atinuke-seed0-resid1

runs/sae/minilm-resid3/metrics.json: | pretrained
	.venv/bin/workbench sae train --model minilm --hook blocks.3.hook_resid_post $(SAE_FLAGS) --out runs/sae/minilm-resid3

# Mechanisms: the logit and tuned lens of both pretrained arms, and head patching of a minimal SNLI edit
# (a negated hypothesis: it flips both models from entailment to contradiction).
runs/lens/%-seed0/lens_layers.parquet: | pretrained
	.venv/bin/workbench lens --model $(EXPERIMENT)/$*/seed0/pretrain --steps 150 --eval-texts 200 --out runs/lens/$*-seed0

runs/patch/%-seed0-snli/patching.parquet: | experiment
	.venv/bin/workbench patch --model $(EXPERIMENT)/$*/seed0/finetune/snli --clean "A man is playing a guitar on stage." \
	  --clean-pair "A man is playing music." --corrupted "A man is playing a guitar on stage." \
	  --corrupted-pair "A man is not playing." --out runs/patch/$*-seed0-snli

# The node-level circuit of the same edit (both models are post-norm: heads and MLPs are the units).
runs/circuit/%-seed0-snli/nodes.parquet: | experiment
	.venv/bin/workbench circuit --model $(EXPERIMENT)/$*/seed0/finetune/snli --clean "A man is playing a guitar on stage." \
	  --clean-pair "A man is playing music." --corrupted "A man is playing a guitar on stage." \
	  --corrupted-pair "A man is not playing." --fraction 0.9 --out runs/circuit/$*-seed0-snli

# A decoder on show: a tiny causal Atinuke (`--objective clm`), the tiny recipe cut to 120 steps and a 16-block
# evaluation (137 s of CPU time, about 2 minutes on 2 cores; PTB valid ppl 439 against unigram 801): the app's
# attention and attribution pages on a decoder. A CLM step projects every position onto the vocabulary, ~6x an
# MLM step here.
CLM_RUN := runs/pretrain/atinuke-clm

$(CLM_RUN)/model/config.json: | pretrained
	.venv/bin/atinuke pretrain --objective clm --preset tiny --steps 120 --warmup 20 --eval-every 120 \
	  --checkpoint-every 120 --eval-max-blocks 16 --seed 0 --out $(CLM_RUN)

# A real pretrained decoder: SmolLM2-135M-Instruct (`--model smollm2`, a 4-bit GGUF dequantised to fp32, converted
# once by `atinuke prepare-data`). IOI (Wang et al. 2022) patching and a node circuit checked on held-out prompts,
# the logit lens (the tuned lens is cut: 30 translators are minutes of CPU), and the attribution of an 8-token chat
# answer. Cut from the demo for time: an SAE on its residual stream and probing (both work with --model smollm2).
runs/circuit/smollm2-ioi/summary.json: | data
	.venv/bin/workbench circuit --model smollm2 --preset ioi --n-prompts 8 --n-heldout 8 --overwrite --out runs/circuit/smollm2-ioi

runs/lens/smollm2/lens_layers.parquet: | data
	.venv/bin/workbench lens --model smollm2 --steps 0 --eval-texts 16 --max-length 48 --overwrite --out runs/lens/smollm2

runs/attributions/smollm2-chat/attributions.parquet: | data
	.venv/bin/workbench attribute --model smollm2 --chat --target generate=8 --data docs/examples/prompts.txt \
	  --limit 2 --method integrated_gradients --n-steps 16 --no-progress --overwrite --out runs/attributions/smollm2-chat

SMOLLM2_DEMO := runs/circuit/smollm2-ioi/summary.json runs/lens/smollm2/lens_layers.parquet \
	runs/attributions/smollm2-chat/attributions.parquet

# Everything the app shows, in the order a visitor needs it.
models: data experiment runs/lr-sweep/best.json runs/probes/atinuke-seed0/pos/results.parquet runs/probes/bert-seed0/pos/results.parquet \
	runs/probes/minilm/pos/results.parquet \
	runs/attributions/atinuke-snli/attributions.parquet runs/attributions/minilm-snli/attributions.parquet \
	runs/sae/atinuke-seed0-resid1/metrics.json runs/sae/minilm-resid3/metrics.json \
	runs/lens/atinuke-seed0/lens_layers.parquet runs/lens/bert-seed0/lens_layers.parquet \
	runs/patch/atinuke-seed0-snli/patching.parquet runs/patch/minilm-seed0-snli/patching.parquet \
	runs/circuit/atinuke-seed0-snli/nodes.parquet runs/circuit/minilm-seed0-snli/nodes.parquet \
	$(CLM_RUN)/model/config.json $(SMOLLM2_DEMO)

app:
	.venv/bin/streamlit run app.py --server.address 127.0.0.1 --server.headless true

# The app answers as soon as the data are ready; the models build in the background (log: runs/build.log)
# and every page says what is still being built. Two jobs at a time with one thread each keep both cores busy.
# A lock, not a process search: the search matched its own shell's command line, so the build never started.
demo: data
	mkdir -p runs
	if flock -n runs/.build.lock true; then \
	  OMP_NUM_THREADS=1 nohup flock -n runs/.build.lock $(MAKE) -j2 --no-print-directory models > runs/build.log 2>&1 & \
	else echo "the models are already being built (runs/build.log)"; fi
	$(MAKE) --no-print-directory app

test: install
	.venv/bin/ruff check .
	.venv/bin/mypy
	$(PY) -m pytest -q

# On a busy 2-core machine one thread per process gives the steadiest ratios.
bench: install
	OMP_NUM_THREADS=1 $(PY) bench/train_throughput.py --quick
	OMP_NUM_THREADS=1 $(PY) bench/finetune.py --quick
	OMP_NUM_THREADS=1 $(PY) bench/attribution.py
	OMP_NUM_THREADS=1 $(PY) bench/probes.py
	OMP_NUM_THREADS=1 $(PY) bench/app_pages.py
	OMP_NUM_THREADS=1 $(PY) bench/sae.py
	OMP_NUM_THREADS=1 $(PY) bench/patching.py
	OMP_NUM_THREADS=1 $(PY) bench/hooks.py

clean:
	rm -rf .venv runs

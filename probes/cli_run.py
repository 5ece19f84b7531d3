"""``probes run``: probe the layers of one model on one task; writes results.parquet and summary.json."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atinuke.io import check_out_dir
from atinuke.paths import runs_dir
from probes.estimators import PROBE_KINDS
from probes.features import SPAN_POOLS, WORD_POOLS
from probes.runner import ProbeRunConfig, headline_metric, run_probing
from probes.tasks import CORPORA

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags map one-to-one onto :class:`probes.runner.ProbeRunConfig`."""
    defaults = ProbeRunConfig()
    parser.add_argument("--model", default=defaults.model, help="'minilm' or a model/run directory")
    parser.add_argument("--task", default=defaults.task, help="probing task (pos, xpos, ner, dep, srl, coref, "
                        "tree_distance, tree_depth, length, acceptability, nli)")
    parser.add_argument("--layers", default=defaults.layers, help="'all', '0,3,6' or '1-4'")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default runs/probes/<model>/<task>)")
    parser.add_argument("--data", choices=("gold", "ud", "silver", "diag"), default=None,
                        help="label source (default: ud, the gold UD English EWT, where ATINUKE_DATA has it)")
    parser.add_argument("--corpus", choices=CORPORA, default=defaults.corpus, help="real text for silver labels")
    parser.add_argument("--max-sentences", type=int, default=defaults.max_sentences)
    parser.add_argument("--probe", choices=PROBE_KINDS, default=defaults.probe)
    parser.add_argument("--seeds", type=int, default=defaults.seeds)
    parser.add_argument("--controls", action="store_true", help="control task + random-initialisation model")
    parser.add_argument("--mdl", action="store_true", help="online-code MDL (Voita & Titov, 2020)")
    parser.add_argument("--word-pool", choices=WORD_POOLS, default=defaults.word_pool)
    parser.add_argument("--span-pool", choices=SPAN_POOLS, default=defaults.span_pool)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--jobs", type=int, default=defaults.n_jobs, help="layers fitted in parallel")
    parser.add_argument("--backend", choices=("loky", "threading"), default=defaults.backend,
                        help="joblib backend for --jobs")
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--C", type=float, default=defaults.C, help="inverse L2 strength of the linear probe")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in a non-empty --out (reuses its extracted features)")
    parser.add_argument("--overwrite", action="store_true", help="replace results.parquet and summary.json in --out")


def run(args: argparse.Namespace) -> int:
    config = ProbeRunConfig(model=str(args.model), task=args.task, layers=args.layers, data=args.data,
                            corpus=args.corpus, max_sentences=args.max_sentences, probe=args.probe, seeds=args.seeds,
                            controls=args.controls, mdl=args.mdl, word_pool=args.word_pool, span_pool=args.span_pool,
                            batch_size=args.batch_size, n_jobs=args.jobs, backend=args.backend,
                            device=args.device, C=args.C)
    out = check_out_dir(args.out or runs_dir() / "probes" / Path(str(args.model)).name / args.task,
                        resume=args.resume, overwrite=args.overwrite)  # before any work: the one output policy
    result = run_probing(config, out)
    metric = headline_metric(result.results)
    headline = result.results[(result.results["metric"] == metric) & (result.results["control"] == "none")]
    mean = headline.groupby("layer")["value"].mean()
    print(f"{args.task} on {result.results['model'].iloc[0]} ({result.source}): best layer {int(mean.idxmax())} "
          f"{metric} {mean.max():.3f}; wrote {out}/results.parquet")
    return 0

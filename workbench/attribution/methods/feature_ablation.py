"""Feature ablation: the target's change when one token at a time is replaced by the baseline."""
from __future__ import annotations

import torch

from workbench.attribution.method import AttributionMethod, MethodCall, MethodOutput


class FeatureAblation(AttributionMethod):
    name = "feature_ablation"
    family = "perturbation"
    params = ("baseline",)

    def scores(self, call: MethodCall) -> MethodOutput:
        import captum.attr as ca

        b, t, d = call.embeds.shape
        embeds = call.embeds.clone().requires_grad_(False)
        per_eval = max(1, call.params.rows_per_pass(t) // max(b, 1))
        mask = torch.arange(t, device=embeds.device).view(1, t, 1).expand(b, t, d)
        attr = ca.FeatureAblation(call.forward).attribute(embeds, baselines=call.base, additional_forward_args=call.args,
                                                          feature_mask=mask, perturbations_per_eval=per_eval)
        return MethodOutput(attr[..., 0])

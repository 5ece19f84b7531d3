"""Surrogate-model attributions over token on/off masks, one example at a time (Captum's LIME and KernelShap
need batch 1): LIME (Ribeiro et al., 2016, arXiv 1602.04938) and KernelShap (Lundberg & Lee, 2017,
arXiv 1705.07874)."""
from __future__ import annotations

from typing import ClassVar

import torch

from workbench.attribution.method import AttributionMethod, MethodCall, MethodOutput, rows_of


class _Surrogate(AttributionMethod):
    family = "perturbation"
    params = ("baseline", "n_samples", "seed")
    captum_class: ClassVar[str]  # the name of the Captum explainer

    def scores(self, call: MethodCall) -> MethodOutput:
        import captum.attr as ca

        scores = torch.zeros(call.embeds.shape[:2])
        for r, n, embeds, base, args in rows_of(call):
            torch.manual_seed(call.params.seed)
            d = embeds.shape[-1]
            mask = torch.arange(n).view(1, n, 1).expand(1, n, d)
            per_eval = max(1, min(call.params.n_samples, call.params.rows_per_pass(n)))
            explainer = getattr(ca, self.captum_class)(call.forward)  # a fresh one per example, as it fits one
            attr = explainer.attribute(embeds, baselines=base, additional_forward_args=args, feature_mask=mask,
                                       n_samples=call.params.n_samples, perturbations_per_eval=per_eval)
            scores[r, :n] = attr[0, :, 0].detach()
        return MethodOutput(scores, torch.full((len(call.lengths),), float("nan")))


class Lime(_Surrogate):
    name = "lime"
    captum_class = "Lime"


class KernelShap(_Surrogate):
    name = "kernel_shap"
    captum_class = "KernelShap"

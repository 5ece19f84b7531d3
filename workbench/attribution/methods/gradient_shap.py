"""GradientShap (Lundberg & Lee, 2017, arXiv 1705.07874): expected gradients between the input and noisy
baselines, one example at a time (its samples are per example), with the convergence delta."""
from __future__ import annotations

import torch

from workbench.attribution.method import AttributionMethod, MethodCall, MethodOutput, rows_of


class GradientShap(AttributionMethod):
    name = "gradient_shap"
    family = "gradient"
    params = ("baseline", "n_samples", "stdevs", "seed")

    def scores(self, call: MethodCall) -> MethodOutput:
        import captum.attr as ca

        scores = torch.zeros(call.embeds.shape[:2])
        deltas = torch.full((len(call.lengths),), float("nan"))
        for r, n, embeds, base, args in rows_of(call):
            torch.manual_seed(call.params.seed)
            attr, delta = ca.GradientShap(call.forward).attribute(
                embeds, baselines=base, n_samples=call.params.n_samples, stdevs=call.params.stdevs,
                additional_forward_args=args, return_convergence_delta=True)
            scores[r, :n] = attr.sum(-1)[0].detach()
            deltas[r] = delta.mean().detach()
        return MethodOutput(scores, deltas)

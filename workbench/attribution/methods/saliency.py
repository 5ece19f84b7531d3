"""Saliency (Simonyan et al., 2013, arXiv 1312.6034): the l2 norm of the target's gradient at each token's
embedding."""
from __future__ import annotations

from workbench.attribution.method import AttributionMethod, MethodCall, MethodOutput


class Saliency(AttributionMethod):
    name = "saliency"
    family = "gradient"

    def scores(self, call: MethodCall) -> MethodOutput:
        import captum.attr as ca

        embeds = call.embeds.clone().requires_grad_(True)
        grads = ca.Saliency(call.forward).attribute(embeds, additional_forward_args=call.args, abs=False)
        return MethodOutput(grads.norm(dim=-1))

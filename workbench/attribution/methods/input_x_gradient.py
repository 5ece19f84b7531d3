"""Input x gradient (Shrikumar et al., 2016, arXiv 1605.01713), summed over embedding dimensions."""
from __future__ import annotations

from workbench.attribution.method import AttributionMethod, MethodCall, MethodOutput


class InputXGradient(AttributionMethod):
    name = "input_x_gradient"
    family = "gradient"

    def scores(self, call: MethodCall) -> MethodOutput:
        import captum.attr as ca

        embeds = call.embeds.clone().requires_grad_(True)
        return MethodOutput(ca.InputXGradient(call.forward).attribute(embeds, additional_forward_args=call.args).sum(-1))

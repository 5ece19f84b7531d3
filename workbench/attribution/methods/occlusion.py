"""Occlusion (Zeiler & Fergus, 2014, arXiv 1311.2901): the target's change when a window of tokens is
replaced by the baseline, averaged over the windows that cover each token."""
from __future__ import annotations

from workbench.attribution.method import AttributionMethod, MethodCall, MethodOutput


class Occlusion(AttributionMethod):
    name = "occlusion"
    family = "perturbation"
    params = ("baseline", "window")

    def scores(self, call: MethodCall) -> MethodOutput:
        import captum.attr as ca

        b, t, d = call.embeds.shape
        embeds = call.embeds.clone().requires_grad_(False)
        per_eval = max(1, call.params.rows_per_pass(t) // max(b, 1))
        attr = ca.Occlusion(call.forward).attribute(embeds, sliding_window_shapes=(min(call.params.window, t), d),
                                                    strides=(1, d), baselines=call.base,
                                                    additional_forward_args=call.args, perturbations_per_eval=per_eval)
        return MethodOutput(attr.sum(-1) / d)

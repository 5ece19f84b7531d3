"""Integrated gradients (Sundararajan et al., 2017, arXiv 1703.01365) on the token embeddings, with Captum's
convergence delta and, given a tolerance, adaptive steps."""
from __future__ import annotations

import logging

import torch

from workbench.attribution.method import AttributionMethod, MethodCall, MethodOutput

logger = logging.getLogger(__name__)


class IntegratedGradients(AttributionMethod):
    name = "integrated_gradients"
    family = "gradient"
    params = ("baseline", "n_steps", "tolerance", "max_steps", "ig_method")

    def scores(self, call: MethodCall) -> MethodOutput:
        import captum.attr as ca

        params = call.params
        embeds = call.embeds.clone().requires_grad_(False)
        attr, delta = ca.IntegratedGradients(call.forward).attribute(
            embeds, baselines=call.base, additional_forward_args=call.args, n_steps=params.n_steps,
            method=params.ig_method, internal_batch_size=params.rows_per_pass(embeds.shape[1]),
            return_convergence_delta=True)
        output = MethodOutput(attr.sum(-1), delta, [{"n_steps_used": params.n_steps} for _ in call.lengths])
        if params.tolerance is not None:
            self._refine(call, output)
        return output

    @staticmethod
    def _refine(call: MethodCall, output: MethodOutput) -> None:
        """Double n_steps for the rows whose |delta| >= tolerance, up to max_steps."""
        import captum.attr as ca

        params, scores, deltas = call.params, output.scores, output.deltas
        assert deltas is not None and params.tolerance is not None
        steps = params.n_steps
        todo = (deltas.abs() >= params.tolerance).nonzero().flatten()
        while len(todo) and steps * 2 <= params.max_steps:
            steps *= 2
            args = tuple(a[todo] if torch.is_tensor(a) else a for a in call.args)
            attr, delta = ca.IntegratedGradients(call.forward).attribute(
                call.embeds[todo], baselines=call.base[todo], additional_forward_args=args, n_steps=steps,
                method=params.ig_method, internal_batch_size=params.rows_per_pass(call.embeds.shape[1]),
                return_convergence_delta=True)
            scores[todo] = attr.sum(-1).detach().to(scores.dtype)
            deltas[todo] = delta.detach().to(deltas.dtype)
            for r in todo.tolist():
                output.extras[r]["n_steps_used"] = steps
            todo = todo[delta.abs() >= params.tolerance]
        if len(todo):
            logger.warning("%d example(s) still have |delta| >= %g at max_steps=%d", len(todo), params.tolerance,
                           params.max_steps)

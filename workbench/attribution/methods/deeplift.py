"""DeepLift (Shrikumar et al., 2017, arXiv 1704.02685), for models whose nonlinearities Captum's DeepLift
supports; its gradient rewrites are module hooks, so the last block is never pruned under it."""
from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from atinuke.errors import UserInputError
from workbench.attribution.method import AttributionMethod, MethodCall, MethodOutput

if TYPE_CHECKING:  # annotations only
    from workbench.subject import Subject


class DeepLift(AttributionMethod):
    name = "deeplift"
    family = "gradient"
    params = ("baseline",)
    row_prunable = False

    def check(self, subject: Subject) -> None:
        from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

        linear_ok = (nn.Linear, nn.Embedding, nn.LayerNorm, nn.Dropout, nn.Identity, nn.ModuleList, nn.ModuleDict)
        for name, module in subject.module.named_modules():
            if len(list(module.children())) == 0 and not isinstance(module, linear_ok + tuple(SUPPORTED_NON_LINEAR)):
                if type(module).__name__ != "HookPoint":
                    raise UserInputError(f"deeplift does not support {type(module).__name__} ({name}); "
                                         f"use integrated_gradients or a ReLU model")

    def scores(self, call: MethodCall) -> MethodOutput:
        import captum.attr as ca

        embeds = call.embeds.clone().requires_grad_(True)
        attr, delta = ca.DeepLift(call.forward).attribute(embeds, baselines=call.base, additional_forward_args=call.args,
                                                          return_convergence_delta=True)
        return MethodOutput(attr.sum(-1), delta)

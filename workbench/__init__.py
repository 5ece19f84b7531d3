"""Atinuke Workbench: analysis over any model behind one interface (see docs/architecture.md)."""
from workbench.subject import ActivationCache, HookInfo, PatchResult, Subject, load_subject

__all__ = ["ActivationCache", "HookInfo", "PatchResult", "Subject", "load_subject"]

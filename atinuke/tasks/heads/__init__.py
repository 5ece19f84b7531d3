"""Task heads on any encoder that exposes hidden states: Atinuke and Hugging Face BERT-family models.

Heads (one module per kind):
- :mod:`~atinuke.tasks.heads.classification`: sequence classification / regression on [CLS] or mean pooling
  (Devlin et al., 2019, arXiv 1810.04805).
- :mod:`~atinuke.tasks.heads.qa`: span-extraction QA with a null answer at [CLS] and doc stride.
- :mod:`~atinuke.tasks.heads.tagging`: SRL as BIO tagging with a learned predicate indicator
  (Shi & Lin, 2019, arXiv 1904.05255), Viterbi decoding under BIO constraints.
- :mod:`~atinuke.tasks.heads.coref`: coreference as span ranking (Lee et al., 2017, arXiv 1707.07045).

Stable API (the attribution engine and the workbench rely on it):
- ``build_task_model(encoder, spec, device="cpu", **head_config) -> TaskModel``
- ``load_task_model(directory, device="cpu") -> TaskModel`` (eval mode); ``save_task_model(model, directory)``.
- ``TaskModel.encode(examples) -> TaskBatch`` with ``input_ids``, ``attention_mask``, ``token_type_ids``
  (None for Atinuke), ``head_inputs``, ``offsets`` [batch, pos, 2], ``segments`` [batch, pos] (rationale
  segment of each token, -1 special), ``example_index``, ``info``; ``batch.model_inputs(with_targets=False)``
  gives the keyword arguments of ``forward``.
- ``TaskModel.forward(input_ids, attention_mask, token_type_ids=None, **head_inputs) -> TaskOutput``
  (``logits`` [batch, n_labels] or [batch]; ``start_logits``/``end_logits`` [batch, pos]; ``tag_logits``
  [batch, pos, n_tags]; coreference ``mention_scores``, ``top_span_indices``, ``antecedent_indices``,
  ``antecedent_scores``). Every ``head_inputs`` tensor of a non-coreference task has the batch dimension
  first, so it can be expanded alongside ``input_ids`` (Captum's ``additional_forward_args``).
- ``TaskModel.encoder`` is the base encoder module: ``model.encoder.get_input_embeddings()`` is the token
  embedding layer to attribute to; its hook points are those of ``workbench.subject``.
- ``TaskModel.predict(examples, batch_size) -> list[TaskPrediction]`` (``value`` in the
  ``score_task`` format, ``score`` the confidence, ``probs`` for classification).
"""
from atinuke.tasks.heads.common import HeadConfig, TaskBatch, TaskOutput, TaskPrediction
from atinuke.tasks.heads.coref import decode_clusters, enumerate_spans
from atinuke.tasks.heads.model import (
    TaskModel,
    build_task_model,
    load_task_model,
    prediction_values,
    save_task_model,
)
from atinuke.tasks.heads.qa import decode_qa_example, span_candidates
from atinuke.tasks.heads.tagging import viterbi_bio

__all__ = [
    "HeadConfig",
    "TaskBatch",
    "TaskModel",
    "TaskOutput",
    "TaskPrediction",
    "build_task_model",
    "decode_clusters",
    "decode_qa_example",
    "enumerate_spans",
    "load_task_model",
    "prediction_values",
    "save_task_model",
    "span_candidates",
    "viterbi_bio",
]

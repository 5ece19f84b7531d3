"""Direct logit attribution: the parts sum to the model's own logit (pre-norm, GPT-2, last block of post-norm),
the planted model's read-out is carried by the planted head alone, and post-norm models are refused by name."""
from __future__ import annotations

import pytest
import torch

from atinuke.errors import UserInputError
from workbench.decompose import direct_logit_attribution, last_block_decomposition
from workbench.subject import load_subject

TEXTS = ["the cat sat on the mat", "stocks fell on monday"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _randomise(model: torch.nn.Module) -> None:
    """Every parameter random (biases and layer-norm gains too), so no part is trivially zero."""
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():  # 1-D weights are layer-norm gains: keep them near 1
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.dim() == 1 and name.endswith("weight") else 0.0))


def test_pre_norm_atinuke_parts_sum_to_the_mlm_logit(tiny_tokenizer, tmp_path):
    from atinuke.config import AtinukeConfig
    from atinuke.model import AtinukeForMaskedLM
    from atinuke.tokenizer import save_tokenizer

    torch.manual_seed(0)
    config = AtinukeConfig(vocab_size=len(tiny_tokenizer), d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=64,
                           dropout=0.0, norm_placement="pre", tie_word_embeddings=False)
    model = AtinukeForMaskedLM(config).eval()
    _randomise(model)
    model.save_pretrained(tmp_path / "m")
    save_tokenizer(tiny_tokenizer, tmp_path / "m")
    subject = load_subject(tmp_path / "m")
    inputs = subject.tokenize(TEXTS)
    token, position = 17, 3
    with torch.no_grad():
        logits = model(inputs["input_ids"], inputs["attention_mask"]).logits[:, position, token]  # [batch]
    weight, bias = model.get_output_embeddings().weight[token].detach(), float(model.get_output_embeddings().bias[token].detach())
    frame = direct_logit_attribution(subject, inputs, weight, position, bias)
    parts = frame.groupby("example")["contribution"].sum()
    assert parts.to_numpy() == pytest.approx(logits.numpy(), abs=1e-5)
    assert len(frame["component"].unique()) == 1 + 2 * (4 + 2) + 2  # embed, heads, attn biases, MLPs, 2 biases
    assert frame.groupby("component")["contribution"].apply(lambda v: v.abs().max()).min() > 0  # none vacuous


def test_gpt2_parts_sum_to_the_tied_lm_logit(tiny_tokenizer, tmp_path):
    from transformers import AutoModel, GPT2Config

    from atinuke.tokenizer import save_tokenizer

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tiny_tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0)
    model = AutoModel.from_config(config).eval()
    _randomise(model)
    model.save_pretrained(tmp_path / "g")
    save_tokenizer(tiny_tokenizer, tmp_path / "g")
    subject = load_subject(tmp_path / "g")
    inputs = subject.tokenize(TEXTS)
    token, positions = 11, torch.tensor([2, 4])
    with torch.no_grad():
        hidden = subject.forward(inputs).last_hidden_state  # ln_f output
    unembed = subject.adapter.embedding_module()[0].weight[token].detach()  # GPT-2 ties its LM head to wte
    frame = direct_logit_attribution(subject, inputs, unembed, positions)
    expected = hidden[torch.arange(2), positions] @ unembed
    assert frame.groupby("example")["contribution"].sum().to_numpy() == pytest.approx(expected.numpy(), abs=1e-5)


def test_the_planted_heads_share_is_the_whole_read_out():
    from workbench.planted import PlantedCircuit, planted_model, planted_pairs

    model = planted_model()
    subject = load_subject(model)
    inputs = subject.tokenize(planted_pairs(4)[0])
    direction = model.head.dense.weight[0].detach()  # the classifier's unit that reads the o direction
    frame = direct_logit_attribution(subject, inputs, direction, 0).set_index(["example", "component"])["contribution"]
    planted = frame.xs(PlantedCircuit().node, level="component")
    total = frame.groupby("example").sum()
    assert (planted > 0.1).all() and planted.to_numpy() == pytest.approx(total.to_numpy(), abs=1e-5)
    others = frame.drop(PlantedCircuit().node, level="component")
    assert others.abs().max() < 1e-5  # every other head and MLP writes orthogonally to the read-out


def test_post_norm_is_refused_and_its_last_block_splits_exactly(tiny_atinuke_dir):
    subject = load_subject(tiny_atinuke_dir)  # the paper's post-norm Atinuke
    inputs = subject.tokenize(TEXTS)
    direction = torch.randn(subject.d_model, generator=torch.Generator().manual_seed(0))
    with pytest.raises(UserInputError, match="post-norm"):
        direct_logit_attribution(subject, inputs, direction)
    frame = last_block_decomposition(subject, inputs, direction, 1, bias=0.5)
    with torch.no_grad():
        expected = subject.forward(inputs).last_hidden_state[:, 1] @ direction + 0.5
    assert frame.groupby("example")["contribution"].sum().to_numpy() == pytest.approx(expected.numpy(), abs=1e-5)
    assert {"resid_pre", "L1.H0", "MLP1", "ln1 bias", "ln2 bias"} <= set(frame["component"])

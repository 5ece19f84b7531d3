"""The IOI prompt sets (workbench.ioi) and the ``workbench circuit --preset ioi`` command line, without a model:
the pairs differ in the repeated name only, both orders are made, discovery and held-out names are disjoint."""
from __future__ import annotations

import pytest

from atinuke.errors import UserInputError
from workbench.ioi import NAMES, TEMPLATES, ioi_prompts, single_token_names, split_names


class WordTokenizer:
    """One token per name, except the names listed as split (two tokens)."""

    def __init__(self, split: tuple[str, ...] = ()) -> None:
        self.split = split

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        word = text.strip()
        return [1, 2] if word in self.split else [hash(word) % 1000]


def test_pairs_differ_in_the_repeated_name_only():
    prompts = ioi_prompts(WordTokenizer(), 200, seed=3)
    assert len({(p.clean, p.corrupted) for p in prompts}) == 200
    for p in prompts:
        clean, corrupted = p.clean.split(), p.corrupted.split()
        changed = [i for i, (a, b) in enumerate(zip(clean, corrupted)) if a != b]
        assert len(clean) == len(corrupted) and len(changed) == 1
        assert clean[changed[0]].strip(",.") == p.s and corrupted[changed[0]].strip(",.") == p.io
        first, second = (p.io, p.s) if p.order == "ABBA" else (p.s, p.io)
        assert p.clean.startswith(TEMPLATES[p.template].split("{A}")[0] + first)
        assert f"{first} and {second}" in p.clean
    assert {p.order for p in prompts} == {"ABBA", "BABA"}
    assert ioi_prompts(WordTokenizer(), 50, seed=3) == ioi_prompts(WordTokenizer(), 50, seed=3)


def test_names_split_by_the_tokenizer_are_left_out_and_halves_are_disjoint():
    tokenizer = WordTokenizer(split=("Mary", "Robert"))
    usable = single_token_names(tokenizer)
    assert "Mary" not in usable and "Robert" not in usable and len(usable) == len(NAMES) - 2
    discovery, heldout = split_names(tokenizer, seed=0)
    assert not discovery & heldout and discovery | heldout == set(usable)
    held = ioi_prompts(tokenizer, 40, seed=1, exclude_names=discovery)
    assert all(p.io in heldout and p.s in heldout for p in held)
    with pytest.raises(UserInputError, match="single-token names"):
        ioi_prompts(WordTokenizer(split=NAMES[1:]), 1)
    with pytest.raises(UserInputError, match="IOI prompts asked"):
        ioi_prompts(tokenizer, 10 ** 6)


@pytest.mark.parametrize("argv, message", [
    ([], "--clean and --corrupted are required without --preset"),
    (["--preset", "ioi", "--clean", "a b"], "brings its own prompts"),
])
def test_circuit_preset_arguments_are_checked_first(tmp_path, capsys, argv, message):
    from workbench.cli import main

    assert main(["circuit", "--model", "smollm2", "--out", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

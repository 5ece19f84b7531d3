"""Controlled edits of a parsed sentence, shared by the NLI, paraphrase and similarity generators.

Each rule takes a :class:`~atinuke.diagnostic.text.Sentence` (and sometimes a random generator and a pool of
replacement entities) and returns an :class:`Edit` or ``None`` when it does not apply. The rules read
spaCy's silver dependency parse, so a parse error becomes a wrong edit: see docs/diagnostic_suite.md.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from atinuke.diagnostic.text import Sentence, apply_edits, first_upper, tidy

if TYPE_CHECKING:
    from spacy.tokens import Span, Token

NEGATIVE_WORDS = frozenset({"not", "n't", "no", "never", "nobody", "nothing", "none", "neither", "nor", "without", "few", "every", "all", "each", "any", "if", "unless", "whether", "only", "hardly", "barely"})
# Adjectives whose removal does not keep the meaning ("former president" is not a president).
NON_INTERSECTIVE = frozenset({"former", "fake", "false", "alleged", "possible", "potential", "so-called", "mock", "imaginary", "other", "only", "same", "few", "little", "such", "many", "much", "more", "most", "less", "least", "several", "main", "first", "last", "next", "previous", "late", "ex", "future", "apparent", "likely", "supposed", "no", "own", "whole", "entire", "certain", "further", "additional", "prime", "general", "united", "chief", "senior", "vice"})
DROPPABLE_ADVERBS_EXCLUDED = frozenset({"not", "never", "only", "just", "almost", "nearly", "hardly", "barely", "scarcely", "even", "too", "so", "very", "how", "when", "where", "why", "then", "there", "here", "as", "no", "ever", "rather", "quite", "once", "twice", "again", "back", "out", "up", "down", "off", "away", "together", "else", "instead", "however", "about", "around"})
LIGHT_ADVERBS = frozenset({"also", "really", "actually", "indeed", "currently", "now", "already", "meanwhile", "certainly", "clearly"})
SYNONYMS = {
    "although": "though", "though": "although", "whilst": "while", "amongst": "among", "among": "amongst",
    "nearly": "almost", "almost": "nearly", "therefore": "thus", "thus": "therefore", "often": "frequently",
    "frequently": "often", "usually": "typically", "typically": "usually", "quickly": "rapidly",
    "rapidly": "quickly", "roughly": "about", "approximately": "about", "towards": "toward", "toward": "towards",
    "begin": "start", "began": "started", "big": "large", "large": "big", "whole": "entire", "entire": "whole",
}
QUANT_SYNONYMS = {"about": "approximately", "around": "about"}  # only before a number (dep quantmod/advmod)
NEUTRAL_SUFFIXES = (" for the second time", " after a long delay", " despite strong objections", " with little warning",
                    " late at night", " for personal reasons", " in front of a large crowd", " after weeks of planning")
NEUTRAL_ADJECTIVES = ("small", "large", "local", "popular", "distant", "famous", "busy", "quiet")
ENTITY_TYPES = ("PERSON", "GPE", "ORG", "NORP", "LOC")
_MODAL_NEG = {"can": "cannot", "will": "will not", "would": "would not", "could": "could not", "should": "should not", "may": "may not", "might": "might not", "must": "must not", "shall": "shall not"}


@dataclass
class Edit:
    """An edited sentence: ``text`` is the new sentence, ``rule`` the rule that made it."""

    text: str
    rule: str
    meta: dict[str, Any] = field(default_factory=dict)


def _remove(sent: Sentence, first: Token, last: Token) -> tuple[int, int, str]:
    """A deletion covering tokens ``first..last`` (inclusive) and the space before them."""
    start, end = sent.start(first), sent.end(last)
    if start > 0 and sent.text[start - 1] == " ":
        start -= 1
    return start, end, ""


def _contiguous_subtree(token: Token) -> Optional[tuple[Token, Token]]:
    toks = list(token.subtree)
    if toks[-1].i - toks[0].i + 1 != len(toks):
        return None
    return toks[0], toks[-1]


def has_negation(sent: Sentence) -> bool:
    return any(t.dep_ == "neg" or t.lower_ in NEGATIVE_WORDS for t in sent.span)


def negate(sent: Sentence) -> Optional[Edit]:
    """Negate the main verb: "The cat sat on the mat." -> "The cat did not sit on the mat."

    With an auxiliary, "not" follows the first one ("has been" -> "has not been"); a copula takes "not"
    ("is" -> "is not"); otherwise do-support by the verb's tag (VBD did, VBZ does, VBP do + lemma).
    """
    root = sent.span.root
    if has_negation(sent) or root.pos_ not in ("VERB", "AUX") or not any(c.dep_ in ("nsubj", "nsubjpass", "expl") for c in root.children):
        return None
    auxes = [c for c in root.children if c.dep_ in ("aux", "auxpass") and c.i < root.i]
    if auxes:
        aux = auxes[0]
        if not aux.is_alpha or aux.lower_ in ("to",):
            return None
        new = _MODAL_NEG.get(aux.lower_, aux.text + " not")
        new = aux.text[0] + new[1:] if aux.text[:1].isupper() else new
        edit, target = (sent.start(aux), sent.end(aux), new), aux
    elif root.lemma_ == "be" and root.tag_ in ("VBZ", "VBD", "VBP"):
        if not root.is_alpha:
            return None
        edit, target = (sent.start(root), sent.end(root), root.text + " not"), root
    elif root.tag_ in ("VBD", "VBZ", "VBP") and root.lemma_.isalpha() and root.lemma_.islower():
        do = {"VBD": "did", "VBZ": "does", "VBP": "do"}[root.tag_]
        first = root  # "The police quickly arrested" -> "The police did not quickly arrest"
        while first.i > sent.span.start and sent.span.doc[first.i - 1].dep_ == "advmod" and sent.span.doc[first.i - 1].head == root:
            first = sent.span.doc[first.i - 1]
        if first is root:
            edit = (sent.start(root), sent.end(root), f"{do} not {root.lemma_}")
        else:
            edit = (sent.start(first), sent.end(root), f"{do} not " + sent.text[sent.start(first):sent.start(root)] + root.lemma_)
        target = root
    else:
        return None
    return Edit(apply_edits(sent.text, [edit]), "negate_main_verb", {"negation": True, "target": target.text})


def drop_modifier(sent: Sentence, rng: random.Random, kinds: tuple[str, ...] = ("amod", "advmod", "prep", "relcl")) -> Optional[Edit]:
    """Drop one modifier (adjective, adverb, prepositional phrase or relative clause) of the sentence.

    In an upward-entailing context the shorter sentence is entailed (MacCartney & Manning, 2009, natural
    logic); sentences with negation or downward-entailing quantifiers are skipped.
    """
    if has_negation(sent):
        return None
    candidates = []
    for tok in sent.span:
        if tok.ent_type_ or tok.i == sent.span.start:
            continue
        if "amod" in kinds and tok.dep_ == "amod" and tok.pos_ == "ADJ" and tok.head.pos_ == "NOUN" and not list(tok.children) and tok.lower_ not in NON_INTERSECTIVE and tok.is_alpha:
            candidates.append(("amod", tok, tok))
        elif "advmod" in kinds and tok.dep_ == "advmod" and tok.pos_ == "ADV" and tok.head.pos_ == "VERB" and not list(tok.children) and tok.lower_ not in DROPPABLE_ADVERBS_EXCLUDED and tok.is_alpha and tok.lower_.endswith("ly"):
            candidates.append(("advmod", tok, tok))
        elif "prep" in kinds and tok.dep_ == "prep" and tok.head == sent.span.root and tok.lower_ in ("in", "on", "at", "during", "after", "near", "with", "from", "for", "across", "outside", "inside", "through"):
            sub = _contiguous_subtree(tok)
            if sub and sub[1].i > tok.i and sub[1].i < sent.span.end - 1 and any(t.dep_ == "pobj" for t in tok.children):
                candidates.append(("prep", sub[0], sub[1]))
        elif "relcl" in kinds and tok.dep_ == "relcl":
            sub = _contiguous_subtree(tok)
            if sub and sub[0].i > sent.span.start and sub[0].tag_ in ("WDT", "WP", "WP$") and sub[1].i < sent.span.end - 1:
                candidates.append(("relcl", sub[0], sub[1]))
    if not candidates:
        return None
    kind, first, last = candidates[rng.randrange(len(candidates))]
    edits = [_remove(sent, first, last)]
    prev = sent.span.doc[first.i - 1]
    if kind == "amod" and prev.lower_ in ("a", "an") and prev.i >= sent.span.start:
        nxt = sent.span.doc[last.i + 1]
        article = "an" if nxt.lower_[:1] in "aeiou" else "a"
        edits.append((sent.start(prev), sent.end(prev), article if prev.text.islower() else article.capitalize()))
    if kind == "relcl" and prev.text == ",":
        edits.append((sent.start(prev), sent.end(prev), ""))
    dropped = sent.text[sent.start(first):sent.end(last)]
    return Edit(tidy(apply_edits(sent.text, edits)), f"drop_{kind}", {"dropped": dropped, "n_dropped_words": last.i - first.i + 1})


def add_content(sent: Sentence, rng: random.Random) -> Optional[Edit]:
    """Add unsupported content: an adjective before a definite noun, or an adverbial phrase at the end."""
    nouns = [t for t in sent.span if t.tag_ in ("NN", "NNS") and not t.ent_type_ and t.i > sent.span.start
             and sent.span.doc[t.i - 1].lower_ == "the" and not any(c.dep_ in ("amod", "compound") for c in t.children)]
    last = sent.span[-1]
    if nouns and rng.random() < 0.5:
        noun = nouns[rng.randrange(len(nouns))]
        adj = NEUTRAL_ADJECTIVES[rng.randrange(len(NEUTRAL_ADJECTIVES))]
        new = apply_edits(sent.text, [(sent.start(noun), sent.start(noun), adj + " ")])
        return Edit(new, "add_adjective", {"added": adj})
    if last.is_punct and last.text == "." and len(sent.span) > 2 and not sent.span[-2].is_punct:
        suffix = NEUTRAL_SUFFIXES[rng.randrange(len(NEUTRAL_SUFFIXES))]
        new = apply_edits(sent.text, [(sent.start(last), sent.start(last), suffix)])
        return Edit(new, "add_adverbial", {"added": suffix.strip()})
    return None


def _other_number(text: str, rng: random.Random) -> Optional[str]:
    if not re.fullmatch(r"\d{1,3}(,\d{3})*|\d+", text):
        return None
    value = int(text.replace(",", ""))
    if 1000 < value < 2100 and "," not in text:  # a year
        new = value + rng.choice([-3, -2, -1, 1, 2, 3])
    else:
        new = max(2, value * rng.choice([2, 3]) + rng.randint(1, 9))
    return f"{new:,}" if "," in text else str(new)


def replace_entity(sent: Sentence, rng: random.Random, pool: dict[str, list[str]]) -> Optional[Edit]:
    """Replace a named entity by another of the same type from the corpus, or a number by another number."""
    options: list[tuple[str, Span, Optional[Token]]] = []  # (kind, entity, the number token in it)
    for ent in sent.span.ents:
        if ent.label_ in ("CARDINAL", "DATE", "MONEY", "PERCENT", "QUANTITY"):
            for tok in ent:
                if tok.like_num and _other_number(tok.text, rng) is not None:
                    options.append(("number", ent, tok))
                    break
        elif ent.label_ in ENTITY_TYPES and pool.get(ent.label_):
            options.append(("entity", ent, None))
    if not options:
        return None
    kind, chosen, number = options[rng.randrange(len(options))]
    if kind == "number":
        assert number is not None  # a "number" option carries its token
        new = _other_number(number.text, rng)
        assert new is not None  # the token was chosen because it reads as a number
        start, end, old = sent.start(number), sent.end(number), number.text
    else:
        candidates = [e for e in pool[chosen.label_] if e.lower() not in sent.text.lower() and chosen.text.lower() not in e.lower()]
        if not candidates:
            return None
        new = candidates[rng.randrange(len(candidates))]
        start, end, old = chosen.start_char - sent.span.start_char, chosen.end_char - sent.span.start_char, chosen.text
    return Edit(apply_edits(sent.text, [(start, end, new)]), f"replace_{kind}", {"entity_type": chosen.label_, "old": old, "new": new})


def swap_arguments(sent: Sentence) -> Optional[Edit]:
    """Swap the subject and the direct object of the main verb ("A hit B" -> "B hit A")."""
    root = sent.span.root
    subj = [c for c in root.children if c.dep_ == "nsubj"]
    obj = [c for c in root.children if c.dep_ == "dobj"]
    if root.pos_ != "VERB" or len(subj) != 1 or len(obj) != 1 or subj[0].pos_ == "PRON" or obj[0].pos_ == "PRON":
        return None
    s, o = _contiguous_subtree(subj[0]), _contiguous_subtree(obj[0])
    if not s or not o or not (s[1].i < root.i < o[0].i) or o[1].i - o[0].i > 5 or s[1].i - s[0].i > 5:
        return None
    text = sent.text
    s_text = text[sent.start(s[0]):sent.end(s[1])]
    o_text = text[sent.start(o[0]):sent.end(o[1])]
    if s[0].pos_ != "PROPN" and s[0].text != "I":
        s_text = s_text[:1].lower() + s_text[1:]
    new = apply_edits(text, [(sent.start(s[0]), sent.end(s[1]), first_upper(o_text)), (sent.start(o[0]), sent.end(o[1]), s_text)])
    return Edit(new, "swap_arguments", {"subject": s_text, "object": o_text})


def reorder_clause(sent: Sentence) -> Optional[Edit]:
    """Move a fronted adverbial ("In 2003, X ..." / "When ..., X ...") to the end, or a final one to the front."""
    span, root, text = sent.span, sent.span.root, sent.text
    last = span[-1]
    for tok in root.children:
        if tok.dep_ in ("prep", "advcl", "npadvmod") and tok.i >= span.start:
            sub = _contiguous_subtree(tok)
            if not sub:
                continue
            first, end = sub
            if end.i + 1 >= span.end or any(t.dep_ in ("relcl", "acl", "appos", "cc") or t.text in (",", ";") for t in tok.subtree):
                continue  # move only simple adverbials: a clause hanging off them would change what it modifies
            nxt = span.doc[end.i + 1]
            if first.i == span.start and nxt.text == "," and nxt.i < root.i:
                moved = text[:sent.end(end)]
                if first.pos_ != "PROPN" and not first.ent_type_:
                    moved = moved[:1].lower() + moved[1:]
                body = text[sent.end(nxt):sent.start(last)].strip()
                return Edit(first_upper(body) + " " + moved + last.text, "move_adverbial_back", {"moved": moved})
            if tok.dep_ == "prep" and first.i > root.i and end.i == last.i - 1 and last.text == "." and any(t.ent_type_ in ("DATE", "GPE", "TIME") for t in sub):
                moved = text[sent.start(first):sent.end(end)]
                body = text[:sent.start(first)].rstrip()
                if span[0].pos_ != "PROPN" and not span[0].ent_type_ and span[0].text != "I":
                    body = body[:1].lower() + body[1:]
                return Edit(first_upper(moved) + ", " + body + last.text, "move_adverbial_front", {"moved": moved})
    return None


def synonym_swap(sent: Sentence) -> Optional[Edit]:
    """Swap a function word or a common word for a synonym ("although" -> "though", "about 50" -> "approximately 50")."""
    for tok in sent.span:
        new = SYNONYMS.get(tok.lower_)
        if new is None and tok.lower_ in QUANT_SYNONYMS and tok.head.like_num:
            new = QUANT_SYNONYMS[tok.lower_]
        if new and tok.pos_ not in ("PROPN",) and not tok.ent_type_:
            if tok.text[:1].isupper():
                new = first_upper(new)
            return Edit(apply_edits(sent.text, [(sent.start(tok), sent.end(tok), new)]), "synonym", {"old": tok.text, "new": new})
    return None


def drop_parenthetical(sent: Sentence) -> Optional[Edit]:
    """Drop a parenthesis, a comma-delimited appositive, or a light adverb ("also", "currently")."""
    match = re.search(r" \([^()]*\)", sent.text)
    if match:
        return Edit(tidy(sent.text[:match.start()] + sent.text[match.end():]), "drop_parenthesis", {"dropped": match.group(0).strip()})
    for tok in sent.span:
        if tok.dep_ == "appos":
            sub = _contiguous_subtree(tok)
            if sub and sub[0].i > sent.span.start and sub[1].i + 1 < sent.span.end and sent.span.doc[sub[0].i - 1].text == "," and sent.span.doc[sub[1].i + 1].text == ",":
                comma = sent.span.doc[sub[1].i + 1]
                new = tidy(apply_edits(sent.text, [(sent.start(sent.span.doc[sub[0].i - 1]), sent.end(comma), "")]))
                return Edit(new, "drop_appositive", {"dropped": sent.text[sent.start(sub[0]):sent.end(sub[1])]})
    for tok in sent.span:
        if tok.lower_ in LIGHT_ADVERBS and tok.dep_ == "advmod" and tok.i > sent.span.start and not list(tok.children):
            return Edit(tidy(apply_edits(sent.text, [_remove(sent, tok, tok)])), "drop_light_adverb", {"dropped": tok.text})
    return None


def entity_pool(sentences: list[Sentence], split: str) -> dict[str, list[str]]:
    """Entity texts per type seen in ``split`` (sorted by frequency, then text), for replacement edits."""
    counts: dict[str, dict[str, int]] = {}
    for sent in sentences:
        if sent.split != split:
            continue
        for ent in sent.span.ents:
            if ent.label_ in ENTITY_TYPES and ent.text[:1].isupper() and all(t.is_alpha or t.text in ".-'" for t in ent):
                counts.setdefault(ent.label_, {}).setdefault(ent.text, 0)
                counts[ent.label_][ent.text] += 1
    return {label: [t for t, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))][:300] for label, c in sorted(counts.items())}

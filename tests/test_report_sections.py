"""The report's structure: findings first, a section per analysis, captions, scoping, side-by-side comparison,
cut tables linked to their data, and a PDF that opens with the verdicts."""
from __future__ import annotations

import re

import pandas as pd
import pytest
from test_app import make_fixture_runs  # noqa: E402  (the shared runs-directory test fixture)

from atinuke.errors import UserInputError
from workbench import report
from workbench.report.document import Document
from workbench.report.outcomes import informative_slices

ORDER = ["findings-the-paper-s-claims", "models-at-a-glance", "attention", "attribution-and-faithfulness", "probing",
         "dictionary-features", "mechanisms", "training-dynamics", "error-analysis", "model-comparison", "provenance"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_atinuke_dir):
    return make_fixture_runs(tmp_path_factory.mktemp("report_sections"), tiny_atinuke_dir, n=60)


def _h2_order(page: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)" class="part">', page)


def test_sections_in_reading_order_with_contents_and_captions(runs, tmp_path):
    result = report.build_report([runs], tmp_path / "r.html", pdf=False, n_boot=50)
    page = result.html.read_text(encoding="utf-8")
    assert result.sections == ORDER and _h2_order(page) == ORDER
    # The verdicts come before everything else, and the contents link to every part.
    assert page.index('class="claims"') < page.index('id="models-at-a-glance"')
    for section in ORDER:
        assert f'href="#{section}"' in page
    # Every figure has a caption saying how to read it; no figure prints its toolbar.
    assert page.count("<figure") == page.count("<figcaption>") > 5
    assert '"displayModeBar": false' in page and '"displayModeBar": true' not in page
    assert page.count("plotly.js v") == 1
    # Headers wrap between words: no underscores in header cells.
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", page)
    assert headers and not any("_" in h for h in headers)
    # The one fixture model that fails every negated sentence shows in its summary beside the trivial baseline.
    summary = page[page.index('id="models-at-a-glance"'):page.index('id="attention"')]
    assert "trivial" in summary and "tiny-test" in summary and "minilm" in summary
    # The fixture's SAE run gets its section: its metrics beside the random-model control, and contexts.
    features = page[page.index('id="dictionary-features"'):page.index('id="mechanisms"')]
    assert "random-init control" in features and 'class="highlight"' in features and "Create them" not in features


def test_absent_artifacts_say_which_command_creates_them(runs, tmp_path):
    single = runs / "finetune" / "minilm" / "sst2"
    result = report.build_report([single], tmp_path / "r.html", pdf=False, n_boot=50)
    page = result.html.read_text(encoding="utf-8")

    def part(name: str) -> str:
        start = page.index(f'id="{name}"')
        following = [page.index(f'id="{o}"') for o in ORDER if page.index(f'id="{o}"') > start]
        return page[start:min(following) if following else len(page)]

    assert "Create them with:" in part("attention") and "workbench attribute" in part("attention")
    assert "workbench attribute" in part("attribution-and-faithfulness")
    assert "probes run" in part("probing")
    assert "workbench sae train" in part("dictionary-features")
    assert "workbench lens" in part("mechanisms") and "workbench patch" in part("mechanisms")
    assert "workbench dynamics" in part("training-dynamics") and "--keep-log-checkpoints" in part("training-dynamics")
    assert "atinuke experiment" in part("findings-the-paper-s-claims")
    assert "Create them with:" not in part("error-analysis")  # it has its artifact


def test_an_attribution_run_without_evaluation_gets_its_section_and_the_rerun_command(runs, tmp_path):
    result = report.build_report([runs], tmp_path / "r.html", pdf=False, n_boot=50)
    page = result.html.read_text(encoding="utf-8")
    part = page[page.index('id="attribution-and-faithfulness"'):page.index('id="probing"')]
    assert 'class="highlight"' in part and part.count('class="token"') > 10  # words shaded by score
    assert "--evaluate --overwrite" in part and str(runs / "attributions" / "tiny-test") in part


def test_scoped_report_holds_only_the_chosen_models_and_tasks(runs, tmp_path):
    result = report.build_report([runs], tmp_path / "r.html", pdf=False, n_boot=50, models="minilm")
    page = result.html.read_text(encoding="utf-8")
    assert "tiny-test" not in page.split('id="provenance"')[0]
    assert "Errors: sst2 — minilm" in page
    with pytest.raises(UserInputError, match=r"--models: no run of 'nope' here; available: .*minilm"):
        report.build_report([runs], tmp_path / "x.html", pdf=False, models="nope,minilm")
    with pytest.raises(UserInputError, match="--tasks: no run of 'squad2'"):
        report.build_report([runs], tmp_path / "x.html", pdf=False, tasks="squad2")
    with pytest.raises(UserInputError, match="--compare takes two different models"):
        report.build_report([runs], tmp_path / "x.html", pdf=False, pair="minilm")
    assert not (tmp_path / "x.html").exists()


def test_comparison_report_shows_the_two_models_side_by_side(runs, tmp_path):
    result = report.build_report([runs], tmp_path / "r.html", pdf=False, n_boot=50, pair="tiny-test,minilm")
    page = result.html.read_text(encoding="utf-8")
    for section in ("models-at-a-glance", "attribution-and-faithfulness", "error-analysis"):
        start = page.index(f'id="{section}"')
        end = min(page.index(f'id="{o}"') for o in ORDER if page.index(f'id="{o}"') > start)
        pairs = re.findall(r'<div class="pair">\s*<div><h4>([^<]*)</h4>.*?<div><h4>([^<]*)</h4>', page[start:end], re.S)
        assert ("tiny-test", "minilm") in pairs, section
    assert "Comparison: sst2, tiny-test (A) vs minilm (B)" in page


def test_cut_tables_link_to_the_full_table_in_the_data_folder(tmp_path):
    doc = Document("r_data")
    frame = pd.DataFrame({"slice_name": [f"s{i}" for i in range(40)], "value": range(40)})
    block = doc.table(frame, "Forty rows.", name="long table", max_rows=5)
    assert (block.shown, block.total, block.link) == (5, 40, "r_data/long_table.csv")
    assert len(doc.tables["long_table"]) == 40  # the data folder gets every row
    assert "slice name" in block.html and "s5" not in block.html


def test_informative_slices_skip_identifier_features_and_keep_the_widest():
    rows = [dict(feature="meta_id", slice=f"x{i}", n=5, value=i % 2) for i in range(30)]  # one slice per example
    rows += [dict(feature="meta_negation", slice=s, n=50, value=v) for s, v in (("True", 0.1), ("False", 0.9))]
    rows += [dict(feature="meta_length", slice=s, n=50, value=v) for s, v in (("short", 0.5), ("long", 0.6))]
    rows += [dict(feature="meta_rare", slice=s, n=2, value=v) for s, v in (("a", 0.0), ("b", 1.0))]
    chosen = informative_slices(pd.DataFrame(rows), k=1)
    assert set(chosen["feature"]) == {"meta_negation"}
    assert set(informative_slices(pd.DataFrame(rows), k=5)["feature"]) == {"meta_negation", "meta_length"}


@pytest.mark.skipif(report.find_chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_pdf_opens_with_the_verdicts_and_ends_with_provenance(runs, tmp_path):
    pdfium = pytest.importorskip("pypdfium2")
    result = report.build_report([runs], tmp_path / "r.html", pdf=True, n_boot=50)
    document = pdfium.PdfDocument(str(result.pdf))
    texts = [document[i].get_textpage().get_text_range() for i in range(len(document))]
    first = texts[0]
    assert "Contents" in first and "1. Findings: the paper's claims" in first and "Verdict" in first
    document.close()
    # Page 1 lists the parts; each part then starts on a later page, in reading order.
    where = [next(i for i, t in enumerate(texts) if i > 0 and name in t) for name in
             ("2. Models at a glance", "4. Attribution and faithfulness", "9. Error analysis", "11. Provenance")]
    assert where == sorted(where) and len(set(where)) == 4
    assert not any("Produced with Plotly" in t or "Download plot as a png" in t for t in texts)  # no toolbar printed


def test_attribution_words_from_data_are_escaped(tmp_path):
    from workbench.attribution import COLUMNS

    run = tmp_path / "runs" / "attributions" / "hostile"
    run.mkdir(parents=True)
    words = ["fine", '<script>alert("x")</script>', "words"]
    rows = [dict(example_id="e0", token_index=i, token=w, word_index=i, word=w, score=s, method=m, params="{}",
                 target="class=1", delta=float("nan"))
            for m in ("saliency", "integrated_gradients") for i, (w, s) in enumerate(zip(words, (0.2, -1.0, 0.5)))]
    pd.DataFrame(rows, columns=list(COLUMNS)).to_parquet(run / "attributions.parquet", index=False)
    (run / "summary.json").write_text('{"model": "m<b onload=x>x/sst2", "task": "sst2"}')
    result = report.build_report([tmp_path / "runs"], tmp_path / "r.html", pdf=False, n_boot=20)
    page = result.html.read_text(encoding="utf-8")
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "<b onload" not in page and "m&lt;b onload=x&gt;x" in page
    # The most negative word is shaded blue at full strength, the others in proportion.
    assert 'style="background: rgba(31,119,180,0.85)"' in page and 'style="background: rgba(214,39,40,0.17)"' in page


def test_mechanisms_section_shows_lens_and_patching_runs(tiny_atinuke_dir, tmp_path):
    from workbench.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["the cat sat on the mat .", "a dog ran in the park .", "prices rose in june ."] * 6))
    runs = tmp_path / "runs"
    assert main(["lens", "--model", str(tiny_atinuke_dir), "--corpus", str(corpus), "--steps", "3", "--eval-texts",
                 "2", "--out", str(runs / "lens" / "tiny")]) == 0
    assert main(["patch", "--model", str(tiny_atinuke_dir), "--clean", "the cat sat on the mat", "--corrupted",
                 "the dog sat on the mat", "--out", str(runs / "patch" / "tiny")]) == 0
    result = report.build_report([runs], tmp_path / "r.html", pdf=False, n_boot=20)
    page = result.html.read_text(encoding="utf-8")
    part = page[page.index('id="mechanisms"'):page.index('id="training-dynamics"')]
    assert "Lens: model" in part or "Lens: tiny" in part
    assert part.count("<figure") == 4  # the lens curve, then exact, attribution and EAP-IG heatmaps
    assert "Rank correlation with exact patching: attribution" in part
    assert part.count("Create them") == 1 and "workbench circuit --model" in part  # only the circuit is missing


def test_mechanisms_section_draws_a_circuit_run(tmp_path):
    from workbench.cli import main
    from workbench.planted import save_planted

    runs = tmp_path / "runs"
    assert main(["circuit", "--model", str(save_planted(tmp_path / "planted")), "--clean", "the cat red dog sat",
                 "--corrupted", "the cat blue dog sat", "--n-steps", "2", "--out", str(runs / "circuit" / "p")]) == 0
    result = report.build_report([runs], tmp_path / "r.html", pdf=False, n_boot=20)
    page = result.html.read_text(encoding="utf-8")
    part = page[page.index('id="mechanisms"'):page.index('id="error-analysis"')]
    assert "Circuit: planted/planted" in part and part.count("<figure") == 1
    assert "2 of 110 edges" in part and "workbench circuit --model" not in part  # present, so not missing
    assert "embed-&gt;L1.H2.v" in part or "embed->L1.H2.v" in part  # the edge table


def test_mechanisms_section_shows_a_dla_run(tmp_path):
    import json

    from workbench.cli import main
    from workbench.planted import save_planted

    runs = tmp_path / "runs"
    assert main(["dla", "--model", str(save_planted(tmp_path / "planted")), "--text", "the cat red dog sat",
                 "--target", "random:0", "--position", "0", "--out", str(runs / "dla" / "p")]) == 0
    summary = json.loads((runs / "dla" / "p" / "summary.json").read_text())
    result = report.build_report([runs], tmp_path / "r.html", pdf=False, n_boot=20)
    page = result.html.read_text(encoding="utf-8")
    part = page[page.index('id="mechanisms"'):page.index('id="error-analysis"')]
    assert "Direct logit attribution: planted/planted" in part and part.count("<figure") == 1
    assert f"Logit {summary['logit']:.5g}; the parts sum to {summary['sum_of_parts']:.5g}. Exact" in part
    from workbench.report.inputs import gather

    found = gather([runs])
    assert not found.pretrain and [r.kind for r in found.mechanisms] == ["dla"]  # not mistaken for a pretraining run


def test_dynamics_section_shows_both_arms_and_their_half_way_steps(tmp_path):
    from workbench.dynamics import COLUMNS, headline_table

    rows = [(run, step, step * 2048, "induction", 1, 0, scale * (step >= 128)) for run, scale in
            (("tiny-atinuke", 0.9), ("tiny-bert", 0.4)) for step in (0, 64, 128, 256)]
    table = pd.DataFrame(rows, columns=COLUMNS)
    out = tmp_path / "runs" / "dynamics" / "tiny"
    out.mkdir(parents=True)
    table.to_parquet(out / "dynamics.parquet", index=False)
    headline_table(table).to_csv(out / "headline.csv", index=False)
    result = report.build_report([tmp_path / "runs"], tmp_path / "r.html", pdf=False, n_boot=50)
    page = result.html.read_text(encoding="utf-8")
    part = page[page.index('id="training-dynamics"'):page.index('id="error-analysis"')]
    assert "tiny-atinuke" in part and "tiny-bert" in part and "<figcaption>" in part
    assert "Create them with:" not in part and "half" in part

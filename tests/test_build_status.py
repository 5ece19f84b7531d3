"""The banner of a demo still building: experiment units and the analyses built so far (issue 10)."""
from __future__ import annotations

import fcntl
import json
import re
from pathlib import Path

from ui import build_status
from ui.build_status import DEMO_ARTIFACTS, build_running, building_message, status_message

REPO = Path(__file__).resolve().parent.parent


def _models_prerequisites() -> list[str]:
    """The files of the Makefile's ``models`` rule, with its ``VAR := value`` variables expanded."""
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    variables = dict(re.findall(r"^([A-Z_]+) := (.*)$", text, flags=re.M))
    rule = re.search(r"^models: (.*)$", text, flags=re.M).group(1)
    for _ in range(3):
        rule = re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables[m.group(1)], rule)
    return [name for name in rule.split() if name.startswith("runs/")]


def test_the_banner_knows_every_analysis_the_makefile_builds():
    assert [name.removeprefix("runs/") for name in _models_prerequisites()] == list(DEMO_ARTIFACTS)


def test_a_held_lock_means_building_and_a_free_one_does_not(tmp_path):
    assert not build_running(tmp_path)
    (tmp_path / ".build.lock").write_text("")
    assert not build_running(tmp_path)
    with open(tmp_path / ".build.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert build_running(tmp_path)
    assert not build_running(tmp_path)


def test_messages_name_the_running_units_then_the_missing_analyses():
    progress = {"done": 5, "total": 23, "running": ["atinuke/seed0/finetune/srl", "minilm/seed0/finetune/squad2"]}
    message = building_message(progress, missing=DEMO_ARTIFACTS[3:], running=True)
    assert message == ("Still building the experiment: 5/23 units done, now atinuke/seed0/finetune/srl, "
                       "minilm/seed0/finetune/squad2; analyses 3/15 built")
    done = {"done": 23, "total": 23, "running": []}
    message = building_message(done, missing=DEMO_ARTIFACTS[-2:], running=True)
    assert message == ("Still building the analyses: 13/15 built, next circuit minilm-seed0-snli, pretrain atinuke-clm "
                       "(log: runs/build.log)")
    assert building_message(done, missing=DEMO_ARTIFACTS[-2:], running=False) is None  # a build that stopped
    assert building_message(done) is None
    stopped = {"done": 3, "total": 23, "current": "bert/seed0/pretrain", "error": "OSError: disk full"}
    assert "stopped with OSError: disk full" in building_message(stopped)


def test_status_of_a_runs_directory(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "progress.json").write_text(json.dumps({"done": 23, "total": 23}))
    for name in DEMO_ARTIFACTS[:-1]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / ".build.lock").write_text("")
    assert status_message(tmp_path) is None
    with open(tmp_path / ".build.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert status_message(tmp_path) == ("Still building the analyses: 14/15 built, next pretrain atinuke-clm "
                                            "(log: runs/build.log)")
    assert build_status.missing_artifacts(tmp_path) == [DEMO_ARTIFACTS[-1]]

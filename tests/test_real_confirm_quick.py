"""`scripts/real_confirm.py --quick`: the pre-registered confirmatory command end to end on
SmolLM2-135M-Instruct (6 countries, 3 folds by country, two arms), when the model is fetched.
It checks the pipeline (folds, stage sharing, report, claim, resume), not the result."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s2jax.report.rows import read_rows

ROOT = Path(__file__).resolve().parents[1]


def _fetched() -> bool:
    from s2jax.models.fetch import model_file

    return model_file("smollm2-135m-instruct").is_file()


def _run(root: Path, *args: str) -> subprocess.CompletedProcess:
    # as a user runs it: one CPU device (not the suite's 8 fake ones) at XLA's default level
    return subprocess.run([sys.executable, "scripts/real_confirm.py", "--quick", "--root",
                           str(root), *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": ""})


@pytest.mark.slow  # ~3 min on 2 idle cores (2m58s, cold compile cache): 6 SmolLM2 fine-tunes
@pytest.mark.skipif(not _fetched(), reason="SmolLM2-135M-Instruct is not fetched "
                    "(s2jax fetch-models smollm2-135m-instruct)")
def test_quick_confirm_runs_every_arm_reports_the_claim_and_resumes(tmp_path):
    root = tmp_path / "confirm"
    done = _run(root)
    assert done.returncode == 0, done.stderr[-3000:]
    arms = ("chosen_s0", "own_bare_chosen_s0")
    for arm in arms:
        rows = {s: read_rows(root / arm / "eval" / f"{s}.jsonl")
                for s in ("system1", "system2", "distilled")}
        ids = {s: sorted(r.id for r in rs) for s, rs in rows.items()}
        assert ids["distilled"] == ids["system1"] and len(ids["system1"]) == 24
        # System 2 (S2A) only where criterion 1 reads it: the wrong-suggestion template
        assert ids["system2"] == [i for i in ids["system1"] if i.endswith("-suggest_incorrect")]
        assert len(ids["system2"]) == 6
        folds = {}
        for r in map(json.loads, (root / arm / "eval" / "distilled.jsonl").open()):
            folds.setdefault(r["item"], set()).add(r["fold"])
        assert len(folds) == 6 and all(len(f) == 1 for f in folds.values())  # one fold a country
        assert {next(iter(f)) for f in folds.values()} == {0, 1, 2}
    claim = json.loads((root / "claim.json").read_text())
    assert [c["arm"] for c in claim] == ["chosen_s0"]
    assert claim[0]["verdict"] in ("PASS", "FAIL")
    assert claim[0]["criteria"]["control"]["n"] == 6
    assert (root / "report.md").is_file() and (root / "claim.md").is_file()
    times = json.loads((root / "timings.json").read_text())
    assert set(times) == set(arms) and all(t["seconds"] > 0 for t in times.values())
    again = _run(root)  # resumable: a rerun finds every stage done and runs none
    assert again.returncode == 0, again.stderr[-3000:]
    assert "chosen_s0: 0 of" in again.stdout and "own_bare_chosen_s0: 0 of" in again.stdout
    assert json.loads((root / "claim.json").read_text()) == claim


def test_bad_arm_is_one_line_and_exit_2(tmp_path):
    done = _run(tmp_path / "r", "--arms", "chosen_s0,nope")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --arms: unknown arm 'nope'; expected some of chosen_s0, own_bare_chosen_s0"]

"""docs/real_results.md's pre-registered verdict is recomputed from the committed per-item rows:
`scripts/real_confirm.py --root docs/real_runs/confirm --claim-only` on a copy of the committed
root rewrites the committed claim and report byte for byte (no model, nothing sampled)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "real_runs" / "confirm"


def test_the_committed_verdict_is_recomputed_from_the_committed_rows(tmp_path):
    root = tmp_path / "confirm"
    shutil.copytree(COMMITTED, root)
    for name in ("claim.md", "claim.json", "report.md", "report.json"):
        (root / name).unlink()
    arms = sorted(p.name for p in COMMITTED.iterdir() if (p / "results.json").is_file())
    assert {"chosen_s0", "own_bare_chosen_s0"} <= set(arms)
    done = subprocess.run([sys.executable, "scripts/real_confirm.py", "--root", str(root),
                           "--arms", ",".join(arms), "--claim-only"], cwd=ROOT,
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                               "PYTHONPATH": str(ROOT),
                                                               "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("claim.md", "claim.json", "report.md", "report.json"):
        assert (root / name).read_bytes() == (COMMITTED / name).read_bytes(), name
    claim = json.loads((root / "claim.json").read_text())
    assert "FAIL" in json.dumps(claim)  # the verdict docs/real_results.md reports

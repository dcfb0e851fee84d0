"""The attack stages in a project copy of two sample images: untargeted@<method>-<eps> (stages/untargeted.py,
Ghorbani et al. 2019) and attack@<method>-<eps> (stages/attack.py) on the methods issue 16 made attackable."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from deepsaliency.artifacts import prepared_image_path, read_npz
from deepsaliency.metrics.similarity import center_of_mass_shift, top_k_intersection

ROOT = Path(__file__).resolve().parents[1]
STEMS = ["chelsea", "coffee"]
COLUMNS = [
    "image", "method", "eps", "kind", "topk_intersection", "com_shift_px", "label_kept", "prob_adv", "linf",
    "converged", "steps", "passes",
]  # fmt: skip


def make_project(tmp_path: Path, prepared: Path, **sections: dict) -> Path:
    """stages/, params.yaml (``sections`` update its sections' keys) and data/prepared with two sample images,
    laid out as before shards (one folder, no ``shard`` column): such a folder is read as shard 0."""
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    out = tmp_path / "data" / "prepared"
    out.mkdir(parents=True)
    manifest = pd.read_csv(prepared / "manifest.csv")
    manifest[manifest.stem.isin(STEMS)].drop(columns="shard").to_csv(out / "manifest.csv", index=False)
    for stem in STEMS:
        shutil.copy(prepared_image_path(stem, prepared), out / f"{stem}.png")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, keys in sections.items():
        for key, value in keys.items():  # a nested section (attack.<m>) keeps the keys not given
            params[name][key] = params[name][key] | value if isinstance(value, dict) else value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


@pytest.fixture
def project(tmp_path: Path, prepared: Path) -> Path:
    """Tiny untargeted settings: saliency at 8/255, 6 steps."""
    tiny = {"methods": ["saliency"], "eps": [8], "k": 500, "num_iter": 6, "eval_every": 3, "a_topk": 1e4}
    return make_project(tmp_path, prepared, untargeted=tiny)


def test_the_stage_writes_one_row_per_image_and_kind_and_moves_the_map(project, stage_in_process):
    assert stage_in_process(project, "stages/explain.py", "saliency").returncode == 0  # the original maps
    proc = stage_in_process(project, "stages/untargeted.py", "saliency", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(project / "reports/untargeted/saliency-eps8/shard-0.csv")
    assert list(table.columns) == COLUMNS
    assert sorted(zip(table.image, table.kind, strict=True)) == sorted(
        (s, k) for s in STEMS for k in ("topk", "center_of_mass")
    )
    assert (table.method == "saliency").all() and (table.eps == 8).all()
    assert (table.linf <= 8 + 1e-6).all() and (table.linf > 1).all()  # /255 units, within the budget, moved
    assert table.label_kept.all() and (table.steps == 6).all() and (table.passes > 0).all()
    topk = table[table.kind == "topk"].set_index("image")
    assert (topk.topk_intersection < 0.9).all()  # the original top-k pixels were pushed out (1.0 = unmoved)
    # The CSV's numbers are those of the written maps: recompute them from the npz and the explain stage's map.
    for stem in STEMS:
        arrays = read_npz(project / "data/untargeted/saliency/eps8/shard-0" / f"{stem}.npz")
        assert set(arrays) == {"x_adv_topk", "map_topk", "x_adv_center_of_mass", "map_center_of_mass"}
        original = read_npz(project / "data/explanations/saliency/shard-0" / f"{stem}.npz")["map"]
        assert topk.loc[stem, "topk_intersection"] == pytest.approx(
            top_k_intersection(original, arrays["map_topk"], 500)
        )
        row = table[(table.image == stem) & (table.kind == "center_of_mass")].iloc[0]
        assert row.com_shift_px == pytest.approx(center_of_mass_shift(original, arrays["map_center_of_mass"]))
        assert arrays["x_adv_topk"].shape == (3, 224, 224) and np.isfinite(arrays["map_topk"]).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["occlusion", "8"], "error: stages/untargeted.py: method 'occlusion' is not allowed (one of untargeted"),
        (["saliency", "4"], "error: stages/untargeted.py: budget '4' is not allowed (one of untargeted.eps: [8])"),
        (["saliency"], "error: stages/untargeted.py: the arguments are <method> <eps> [<shard>] (got: saliency)"),
        ([], "error: stages/untargeted.py: the arguments are <method> <eps> [<shard>] (got: none)"),
        (["saliency", "8", "1"], "error: stages/untargeted.py: shard '1' is not allowed (one of compute.shards: [0])"),
        (["saliency", "8", "x"], "error: stages/untargeted.py: shard 'x' is not allowed"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(project, stage_in_process, args, message):
    proc = stage_in_process(project, "stages/untargeted.py", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message)
    assert not (project / "reports").exists() and not (project / "data/untargeted").exists()


@pytest.mark.parametrize("script", ["stages/attack.py", "stages/untargeted.py"])
def test_a_bad_deepsaliency_compile_fails_before_any_work(project, stage_in_process, monkeypatch, script):
    monkeypatch.setenv("DEEPSALIENCY_COMPILE", "maybe")
    proc = stage_in_process(project, script, "saliency", "8")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: DEEPSALIENCY_COMPILE: 'maybe' is not allowed (one of 1,")
    assert not (project / "reports").exists() and not (project / "data/untargeted").exists()
    assert not (project / "data/attacks").exists()


@pytest.mark.parametrize("method", ["gradcam", "saliency_smoothed"])
def test_the_attack_stage_runs_the_newly_attackable_methods(tmp_path, prepared, stage_in_process, method):
    """attack@<m>-8 for Grad-CAM and a β-smoothed method: the stage passes gradcam.layer / beta through."""
    run = {"num_iter": 6, "eval_every": 2}
    attack = {"methods": [method], "eps": [8], method: run}
    project = make_project(
        tmp_path, prepared, explain={"methods": [method]}, plots={"min_max_methods": []}, attack=attack
    )
    assert stage_in_process(project, "stages/explain.py", method).returncode == 0  # the target maps
    proc = stage_in_process(project, "stages/attack.py", method, "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    moved = []
    for stem in STEMS:
        out = read_npz(project / f"data/attacks/shard-0/{method}/eps8/{stem}.npz")
        x = read_npz(project / f"data/explanations/{method}/shard-0/{stem}.npz")  # the map the attack started from
        assert out["x_adv"].shape == (3, 224, 224) and out[f"map_{method}"].shape == (224, 224)
        assert int(out["steps"]) == 6 and int(out["passes"]) > 0
        moved.append(not np.array_equal(out[f"map_{method}"], x["map"]))
    assert any(moved)  # the map on x_adv differs from the explain stage's map of x
    loss = pd.read_csv(project / f"reports/attack_loss/{method}-eps8/shard-0.csv")
    expected_beta = 10.0 if method == "saliency_smoothed" else None  # the defence's fixed β; no swap for Grad-CAM
    assert len(loss) == 6 * len(STEMS)
    assert (loss.beta == expected_beta).all() if expected_beta else loss.beta.isna().all()

"""End to end: the real DVC pipeline in a temporary git copy of the repo, on the tiny profile of
tests/dvc_project.py: every stage runs once per session (conftest ``dvc_baseline``); each test here works in its
own copy of that finished project. The experiment workflow (dvc exp run) is in test_pipeline_experiments.py.
"""

import runpy

import pandas as pd
import pytest
import yaml
from dvc_project import ROOT, digest, plots_show, run, stages_run


@pytest.mark.slow
def test_repro_then_only_what_depends_on_a_changed_param_reruns(dvc_baseline, dvc_project):
    _, first = dvc_baseline  # the stages the session's one full `dvc repro` ran
    project = dvc_project
    assert {
        "prepare",
        "masks",
        "explain_rise@0",
        "explain@saliency-0",
        "attack@saliency-4-0",
        "attack@saliency-8-0",
        "attack@rise-4-0",
        "attack@rise-8-0",
        "pgd@0",
        "metrics_images@0",
        "metrics",
        "report",
    } <= first
    assert (
        (project / "data/prepared/manifest.csv")
        .read_text()
        .splitlines()[1]
        .startswith("chelsea.png,chelsea,285,Egyptian cat")
    )
    before = digest(project / "data/explanations")

    # Nothing changed: nothing reruns.
    assert stages_run(run(["dvc", "repro"], project)) == set()

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["rise"]["N"] = 24
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run(["dvc", "status"], project).stdout
    changed = {
        line[:-1] for line in status.splitlines() if line and not line.startswith(("\t", " ")) and line.endswith(":")
    }
    assert "masks" in changed and "explain_rise@0" in changed
    assert not changed & {"prepare", "explain@saliency-0", "explain@integrated_gradients-0", "explain@gradcam-0"}
    rerun = stages_run(run(["dvc", "repro"], project))
    assert {
        "masks",
        "explain_rise@0",
        "attack@rise-4-0",
        "attack@rise-8-0",
        "metrics_images@0",
        "metrics",
        "report",
    } <= rerun
    assert not rerun & {"prepare", "explain@saliency-0", "explain@integrated_gradients-0", "explain@gradcam-0"}
    after = digest(project / "data/explanations")
    assert after["rise/shard-0/chelsea.npz"] != before["rise/shard-0/chelsea.npz"]
    assert after["saliency/shard-0/chelsea.npz"] == before["saliency/shard-0/chelsea.npz"]


@pytest.mark.slow
def test_a_stage_rerun_is_byte_identical(dvc_project):
    project = dvc_project
    outputs = ("data", "reports/metrics", "reports/metrics.json", "reports/attack_loss")
    before = {o: digest(project / o) if (project / o).is_dir() else (project / o).read_bytes() for o in outputs}
    stages = [
        "masks",
        "explain_rise@0",
        "explain@smoothgrad-0",
        "explain@gradient_shap-0",
        "attack@saliency-8-0",
        "attack@rise-8-0",
        "pgd@0",
        "metrics_images@0",
        "metrics",
    ]
    forced = stages_run(run(["dvc", "repro", "--force", "--single-item", *stages], project))
    assert set(stages) <= forced
    after = {o: digest(project / o) if (project / o).is_dir() else (project / o).read_bytes() for o in outputs}
    assert after == before


def test_attack_loss_table_reads_only_the_listed_attacks(tmp_path):
    """The metrics stage's one loss table holds exactly the attacks it is given, never a stale CSV on disk."""
    from deepsaliency.errors import DeepSaliencyError

    stage = runpy.run_path(str(ROOT / "stages/metrics.py"))  # not __main__: defines, runs nothing
    steps = pd.DataFrame(
        {
            "step": [1, 2, 1, 2],
            "image": ["chelsea", "chelsea", "coffee", "coffee"],
            "expl_loss": [2e-9, 1e-9, 3e-9, 2.5e-9],
            "output_loss": [0.0, 1e-6, 0.0, 2e-6],
            "beta": [10.0, 100.0, 10.0, 100.0],
        }
    )
    steps.to_csv(tmp_path / "saliency-eps8.csv", index=False)
    steps.assign(expl_loss=steps["expl_loss"] * 7).to_csv(tmp_path / "rise-eps8.csv", index=False)  # a dropped one
    steps.assign(expl_loss=steps["expl_loss"] * 5).to_csv(tmp_path / "saliency-eps4.csv", index=False)  # dropped ε
    table = stage["attack_loss_table"]([("saliency", 8.0)], tmp_path)
    assert list(table.columns) == ["attack", "eps", "step", "image", "expl_loss", "output_loss", "beta"]
    pd.testing.assert_frame_equal(table.drop(columns=["attack", "eps"]), steps)
    assert set(table["attack"]) == {"saliency"} and set(table["eps"]) == {8.0}
    both = stage["attack_loss_table"]([("rise", 8.0), ("saliency", 8.0)], tmp_path)
    assert list(dict.fromkeys(both["attack"])) == ["rise", "saliency"] and len(both) == 8
    assert stage["attack_loss_table"]([], tmp_path).empty
    with pytest.raises(DeepSaliencyError, match="smoothgrad-eps8.csv: missing"):
        stage["attack_loss_table"]([("smoothgrad", 8.0)], tmp_path)


#: Vega-Lite channels that split one line mark into separate lines (or panels).
SERIES_CHANNELS = ("color", "detail", "strokeDash", "row", "column", "facet", "opacity", "shape", "size")


def series_fields(spec: dict) -> list[str]:
    """The data fields by which a (possibly layered) Vega-Lite spec splits its marks into lines."""
    fields = []
    for view in [spec, *spec.get("layer", [])]:
        for channel in SERIES_CHANNELS:
            defs = (view.get("encoding") or {}).get(channel)
            for d in defs if isinstance(defs, list) else [defs]:
                if isinstance(d, dict) and isinstance(d.get("field"), str) and d["field"] not in fields:
                    fields.append(d["field"])
    return fields


def lines(spec: dict, x: str) -> dict[tuple, list[float]]:
    """The lines the spec draws: series key (values of its series fields) → x values in data order."""
    fields = series_fields(spec)
    drawn: dict[tuple, list[float]] = {}
    for point in spec["data"]["values"]:
        drawn.setdefault(tuple(point.get(f) for f in fields), []).append(float(point[x]))
    return drawn


@pytest.mark.slow
def test_dvc_plots_draw_one_line_per_group(dvc_project):
    """Issue 12.6: every plot definition draws one line per (method, image, attack) / (attack, image) group,
    each a function of x, never one line zig-zagging through every group of a file."""
    project = dvc_project
    specs = plots_show(project)
    definitions = yaml.safe_load((project / "dvc.yaml").read_text())["plots"]
    assert len(definitions) == 7 and len(specs) == 7
    for item in definitions:
        ((name, cfg),) = item.items()
        tables = [pd.read_csv(project / f) for f in cfg["y"]]
        # The groups the data holds: every text column of each CSV (method/image/attack/variant) and the budget,
        # unless the budget is the x axis (the manipulability curve: one line per method across ε), per file.
        # The sanity curves' `layer` only names the x value (the layer group randomised at that depth).
        keys = [c for c in [*tables[0].columns] if c not in (cfg["x"], "layer")]
        expected = sum(
            t.groupby([c for c in keys if c == "eps" or not pd.api.types.is_numeric_dtype(t[c])]).ngroups
            for t in tables
        )
        drawn = lines(specs[name], cfg["x"])
        assert sum(map(len, drawn.values())) == sum(map(len, tables)), name  # every row drawn once
        assert len(drawn) == expected > 1, (name, series_fields(specs[name]), len(drawn), expected)
        steps = [b > a for xs in drawn.values() for a, b in zip(xs, xs[1:], strict=False)]
        assert steps and sum(steps) / len(steps) == 1.0, f"{name}: {steps.count(False)} steps go back in x"
    deletion = pd.read_csv(project / "reports/plots/deletion_curves.csv")
    budgets = len(yaml.safe_load((project / "params.yaml").read_text())["attack"]["eps"])
    # 2 images × (4 methods + random) on the originals, + 2 attacks × budgets × 2 images × (own map + random)
    assert deletion.groupby(["method", "image", "attack", "eps"]).ngroups == 2 * (4 + 1) + 2 * budgets * 2 * 2
    curve = pd.read_csv(project / "reports/metrics/manipulability.csv")
    assert curve.groupby("method").size().to_dict() == {"rise": budgets, "saliency": budgets}
    losses = pd.read_csv(project / "reports/plots/attack_loss.csv")
    assert list(dict.fromkeys(losses["attack"])) == ["saliency", "rise"]
    assert set(losses["image"]) == {"chelsea", "coffee"}

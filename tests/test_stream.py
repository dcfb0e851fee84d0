"""Streaming stages (deepsaliency.stream): batches in manifest order, and the same bytes whatever the batch size
or the backend."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from dvc_project import digest

from deepsaliency.artifacts import read_prepared
from deepsaliency.backend import Compute
from deepsaliency.stream import prepared_batches

ROOT = Path(__file__).resolve().parents[1]


def test_prepared_batches_cover_the_manifest_in_order_one_batch_at_a_time(prepared):
    manifest, x = read_prepared(prepared)
    batches = list(prepared_batches(2, prepared))
    assert [len(rows) for rows, _ in batches] == [2, 1]
    assert list(pd.concat([rows for rows, _ in batches])["stem"]) == list(manifest["stem"])
    assert torch.equal(torch.cat([xb for _, xb in batches]), x)  # the same pixels as the whole-set reader
    with pytest.raises(Exception, match="^batch_size: 0"):
        next(prepared_batches(0, prepared))


def test_compute_takes_the_torch_threads_when_unset_and_ignores_the_batch_size():
    section = {"backend": "local", "batch_size": 4, "workers": 2, "threads": None, "gpus_per_worker": 0}
    section["ray_address"] = None
    assert Compute.from_params(section).torch_threads() == torch.get_num_threads()
    assert Compute.from_params({**section, "threads": 1}).torch_threads() == 1


def _project(tmp_path: Path, prepared: Path, compute: dict) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "stages", project / "stages")
    shutil.copytree(prepared, project / "data" / "prepared")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["compute"].update(compute)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def test_explain_stage_writes_the_same_bytes_for_any_batch_size(tmp_path, prepared, stage_in_process):
    outs = []
    for size in (1, 3):
        project = _project(tmp_path / f"b{size}", prepared, {"batch_size": size})
        proc = stage_in_process(project, "stages/explain.py", "input_x_gradient")
        assert proc.returncode == 0, proc.stderr
        assert "3 images" in proc.stdout
        outs.append(digest(project / "data" / "explanations" / "input_x_gradient" / "shard-0"))
    assert len(outs[0]) == 3 and outs[0] == outs[1]


@pytest.mark.slow
def test_explain_stage_on_two_ray_workers_writes_the_local_bytes(tmp_path, prepared, stage_in_process):
    pytest.importorskip("ray")
    import ray

    outs = []
    for backend in ("local", "ray"):
        project = _project(tmp_path / backend, prepared, {"backend": backend, "batch_size": 1, "threads": 1})
        try:
            proc = stage_in_process(project, "stages/explain.py", "saliency")
        finally:
            ray.shutdown()
        assert proc.returncode == 0, proc.stderr
        assert f"({backend} backend)" in proc.stdout
        outs.append(digest(project / "data" / "explanations" / "saliency" / "shard-0"))
    assert len(outs[0]) == 3 and outs[0] == outs[1]


def test_readers_find_files_in_shard_folders_in_shard_order(tmp_path):
    """artifacts.locate / read_table: shard folders by index (shard-2 before shard-10), before the flat layout."""
    from deepsaliency.artifacts import locate, read_table, table_exists

    root = tmp_path / "saliency"
    for folder in ("shard-10", "shard-2", "."):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "cat.npz").write_text(folder)
    assert locate(root, "cat.npz").read_text() == "shard-2"  # a left-over flat file never shadows a shard's
    assert locate(root, "dog.npz") == root / "dog.npz"  # what a missing file's error names
    (root / "only.npz").write_text("flat")
    assert locate(root, "only.npz").read_text() == "flat"  # artifacts from before shards stay readable
    tables = tmp_path / "losses"
    for k in (10, 2):
        (tables / "saliency-eps8").mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"shard": [k]}).to_csv(tables / "saliency-eps8" / f"shard-{k}.csv", index=False)
    assert read_table(tables / "saliency-eps8.csv")["shard"].tolist() == [2, 10]
    assert table_exists(tables / "saliency-eps8.csv") and not table_exists(tables / "rise-eps8.csv")
    pd.DataFrame({"shard": [-1]}).to_csv(tables / "rise-eps8.csv", index=False)
    assert read_table(tables / "rise-eps8.csv")["shard"].tolist() == [-1]


def test_attack_files_are_found_shard_first_and_in_the_two_earlier_layouts(tmp_path):
    """The attacks are written data/attacks/shard-<k>/<method>/eps<e>/ (one DVC dep per shard: every attack of
    the shard); the layouts of earlier runs (<method>/eps<e>/shard-<k>/, and flat) are still read."""
    from deepsaliency.artifacts import attack_dir, attack_file, attack_names, attack_ran

    root = tmp_path / "attacks"
    assert attack_dir("saliency", 8, root, shard=3) == root / "shard-3/saliency/eps8"
    assert attack_dir("pgd", None, root, shard=0) == root / "shard-0/pgd"
    for folder, stem in (("shard-1/saliency/eps8", "cat"), ("saliency/eps8/shard-0", "dog"), ("saliency/eps8", "owl")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / f"{stem}.npz").write_text(folder)
    (root / "saliency/eps8/cat.npz").write_text("flat")  # a left-over flat file never shadows a shard's
    assert attack_file("saliency", "cat", 8, root).read_text() == "shard-1/saliency/eps8"
    assert attack_file("saliency", "dog", 8.0, root).read_text() == "saliency/eps8/shard-0"
    assert attack_file("saliency", "owl", 8, root).read_text() == "saliency/eps8"
    assert attack_file("saliency", "eel", 8, root) == root / "saliency/eps8/eel.npz"  # what the error names
    assert attack_file("saliency", "cat", 4, root) == root / "saliency/eps4/cat.npz"  # budgets never mix
    (root / "shard-0/pgd").mkdir(parents=True)
    assert attack_ran("pgd", None, root) and attack_ran("saliency", 8, root) and not attack_ran("rise", 8, root)
    assert attack_names(root) == ["pgd", "saliency"]


def test_a_stage_takes_its_shard_as_the_last_argument():
    from deepsaliency.errors import ParamError
    from deepsaliency.shards import stage_shard

    assert stage_shard(["saliency", "8", "1"], 2, "stages/attack.py", [0, 1]) == (["saliency", "8"], 1)
    assert stage_shard(["saliency", "8"], 2, "stages/attack.py", [0]) == (["saliency", "8"], 0)  # one shard
    with pytest.raises(ParamError, match=r"^stages/attack.py: the shard is missing \(the last argument, one of "):
        stage_shard(["saliency", "8"], 2, "stages/attack.py", [0, 1])
    with pytest.raises(ParamError, match=r"^stages/pgd.py: shard '2' is not allowed \(one of compute.shards: \[0, 1\]"):
        stage_shard(["2"], 0, "stages/pgd.py", [0, 1])
    # A wrong count of the stage's own arguments goes back to the caller, which names the arguments it takes.
    assert stage_shard(["saliency"], 2, "stages/attack.py", [0, 1]) == (["saliency"], 0)
    assert stage_shard(["saliency", "8", "0", "x"], 2, "stages/attack.py", [0, 1])[0] == ["saliency", "8", "0", "x"]
    from deepsaliency.attack.params import stage_arguments

    with pytest.raises(
        ParamError, match=r"^stages/attack.py: the arguments are <method> <eps> \[<shard>\] \(got: saliency\)"
    ):
        stage_arguments(["saliency"], "stages/attack.py", "attack", ["saliency"], [8])

"""Every DVC stage lists, among its deps, each library module its script can import.

A missed dep once made a change of the model code rerun only `prepare`: DVC reruns a stage when a
dep changes, so a module a stage imports but does not list is a stale-cache bug waiting to happen.
The imports are read from the source (ast), transitively, including imports inside functions.
"""

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "deepsaliency"


def module_file(name: str) -> Path | None:
    """deepsaliency.a.b → deepsaliency/a/b.py or deepsaliency/a/b/__init__.py (None if neither exists)."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path) -> set[str]:
    """Package modules imported anywhere in ``path`` (absolute and relative imports)."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts[:-1])  # the package a relative import starts from (also for __init__.py)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - (node.level - 1)]
                mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                mod = node.module or ""
            if mod.split(".")[0] != PACKAGE:
                continue
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names if module_file(f"{mod}.{a.name}")}
    # importing a.b.c runs a/__init__ and a/b/__init__ first
    return {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 2)}


def closure(script: Path) -> set[Path]:
    todo, seen = list(imports_of(script)), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is not None:
            todo += imports_of(path)
    return {module_file(n) for n in seen if module_file(n) is not None}


def stage_definitions() -> dict[str, dict]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: (body.get("do") or body) for name, body in stages.items()}


def test_the_package_init_imports_no_submodule_eagerly():
    """The one exception to the rule below: the package __init__ only re-exports lazily (PEP 562)."""
    tree = ast.parse((ROOT / PACKAGE / "__init__.py").read_text())
    eager = [
        n
        for n in tree.body
        if (isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith(PACKAGE)))
        or (isinstance(n, ast.Import) and any(a.name.split(".")[0] == PACKAGE for a in n.names))
    ]
    assert not eager, [ast.unparse(n) for n in eager]


def test_every_stage_depends_on_every_module_it_imports():
    missing = {}
    for name, stage in stage_definitions().items():
        script = ROOT / stage["cmd"].split()[1]
        deps = [str(d) for d in stage.get("deps", [])]
        covered = [ROOT / d for d in deps]
        for path in sorted(closure(script)):
            if path == ROOT / PACKAGE / "__init__.py":
                continue
            if not any(path == c or c in path.parents for c in covered):
                missing.setdefault(name, []).append(str(path.relative_to(ROOT)))
        assert stage["cmd"].split()[1] in deps, f"{name}: its own script is not a dep"
        code = [d for d in deps if d.startswith((f"{PACKAGE}/", "stages/")) and "${" not in d]
        assert all((ROOT / d).exists() for d in code), f"{name}: a code dep does not exist: {code}"
    assert not missing, missing


def test_prepare_tracks_the_folder_prepare_images_names(tmp_path, monkeypatch):
    """A study sets prepare.images (README, Running a study): adding an image there must rerun prepare, so the
    stage's dep is that folder as DVC renders dvc.yaml, not a fixed data/images."""
    from dvc.repo import Repo

    def prepare_deps(images: str) -> set[str]:
        project = tmp_path / images.replace("/", "_")
        project.mkdir()
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["prepare"]["images"] = images
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        (project / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
        Repo.init(str(project), no_scm=True)
        monkeypatch.chdir(project)  # DVC reads the params of dvc.yaml's ${…} relative to the working directory
        (stage,) = Repo(str(project)).stage.collect("prepare")
        return {str(Path(d.def_path)) for d in stage.deps}

    default = prepare_deps("data/images")
    study = prepare_deps("data/study")
    assert "data/images" in default and "data/study" not in default
    assert "data/study" in study and "data/images" not in study
    assert default - {"data/images"} == study - {"data/study"}  # the code deps stay

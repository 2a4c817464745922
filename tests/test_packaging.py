"""pyproject.toml and environment.yml describe the same environment; the quick start is runnable."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower()


def _reqs(reqs):
    return {_name(r): r.replace(" ", "") for r in reqs}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_environment_matches_pyproject():
    """environment.yml's pip section: the runtime dependencies, the workflow extra, the test extra."""
    project = _project()
    extras = project["optional-dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_reqs = [r.replace(" ", "") for r in pip_section if not r.startswith("-e")]
    test_own = [r for r in extras["test"] if _name(r) != "wakd"]  # wakd[workflow] is the block above
    wanted = [r.replace(" ", "") for r in project["dependencies"] + extras["workflow"] + test_own]
    assert env_reqs == wanted
    assert "-e ." in pip_section
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python == "python=3.11"


def test_runtime_dependencies_cover_the_field():
    project = _project()
    names = set(_reqs(project["dependencies"]))
    assert {"torch", "torchvision", "faiss-cpu", "h5py", "scipy", "pandas", "matplotlib", "tqdm"} <= names
    assert "snakemake" not in names  # the library runs without it; the pipeline is the workflow extra
    extras = project["optional-dependencies"]
    assert {"snakemake", "pygments"} <= set(_reqs(extras["workflow"]))
    assert "wakd[workflow,onnx]" in extras["test"]  # the tests export to ONNX and run it
    assert {"onnx", "onnxruntime"} <= set(_reqs(extras["onnx"]))
    assert {"pytest", "snakemake-executor-plugin-slurm", "snakefmt"} <= set(_reqs(extras["test"]))
    assert _name(extras["gpu"][0]) == "faiss-gpu"
    assert project["scripts"]["wakd"] == "wakd.__main__:entry"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    match = re.search(r"^TEST_COMMAND='(.+)'$", ci, re.M)
    assert match, ".ci/run must define TEST_COMMAND"
    assert f"\n{match.group(1)}\n" in readme

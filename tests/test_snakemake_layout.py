"""The workflow keeps the standard Snakemake layout: lint-clean, snakefmt-formatted, a runnable
``.test/`` config, and a quick start whose install brings everything the pipeline and its report need.
Each check takes seconds (nothing here trains or renders)."""

import os
import re
import subprocess
import sys
import tomllib

from conftest import REPO, TINY_CONFIG, tiny_workflow_config, workflow_copy


def _run(*args: str, cwd=REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)


def test_snakemake_lint_is_clean():
    res = _run("snakemake", "--lint")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]


def test_rule_files_are_snakefmt_formatted():
    res = _run("snakefmt", "--check", "--diff", "Snakefile", "workflow/")
    changes = "\n".join(line for line in res.stdout.splitlines() if not line.startswith("  "))
    assert res.returncode == 0, f"run `snakefmt Snakefile workflow/`; it would change:\n{changes[-4000:]}{res.stderr}"


def test_test_config_dry_run_plans_the_whole_chain(tmp_path):
    """... without importing torch: planning parses every training block with the commands' options,
    which live torch-free (wakd/stages/train.py, distill.py; the loop is in wakd/training/)."""
    repo = workflow_copy(tmp_path / "repo", tiny_workflow_config())
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("torch was imported while planning")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(blocker.parent),
                                                                      os.environ.get("PYTHONPATH")]))}
    demo = _run("snakemake", "-n", "--cores", "2", cwd=repo, env=env)
    assert demo.returncode == 0 and "Job stats:" in demo.stdout + demo.stderr, (demo.stdout + demo.stderr)[-4000:]
    res = _run("snakemake", "-n", "--cores", "2", "--configfile", str(TINY_CONFIG.relative_to(REPO)), cwd=repo,
               env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:", 1)[1], flags=re.M))
    assert {"synth", "cluster", "train_teacher", "distill_student", "extract", "evaluate", "summarize"} <= set(jobs)
    assert "resources/synthetic/tiny-seed0" in out  # the tiny city, not the demo one


def test_quick_start_extra_brings_snakemake_and_pygments():
    readme = (REPO / "README.md").read_text()
    match = re.search(r'^python3 -m pip install -e "\.\[(\w+)\]" && snakemake --cores all$', readme, re.M)
    assert match, "README's quick start installs an extra, then runs snakemake --cores all"
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in extras[match.group(1)]}
    assert {"snakemake", "pygments"} <= names  # pygments: `snakemake --report` fails without it


def test_a_bad_training_block_stops_the_plan_naming_it(tmp_path):
    """Each `train:` block is parsed as its job will parse it, before any job runs."""
    cfg = tiny_workflow_config()
    cfg["models"]["synthetic"]["teacher"]["train"]["kd_weight"] = 10.0  # a distill option
    repo = workflow_copy(tmp_path / "repo", cfg)
    res = _run("snakemake", "-n", "--cores", "1", "--configfile", "config/tiny.yaml", cwd=repo)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "models.synthetic.teacher" in out and "--kd-weight" in out
    # types and bounds come from the dataclasses alone (the schema declares none)
    for where, block, key, needle in (
            ("models.synthetic.student", None, "lr", "--lr -1.0: expected a value >= 0"),
            ("ablation.variants.student_x", "student_x", "pos_num", "--pos-num -2: expected a value >= 0"),
            ("models.synthetic.student.train.init", None, "init", "expected student_nokd")):
        cfg = tiny_workflow_config()
        value = {"lr": -1.0, "pos_num": -2, "init": "student_kd"}[key]
        if block:
            cfg.setdefault("ablation", {}).setdefault("variants", {})[block] = {key: value}
        else:
            cfg["models"]["synthetic"]["student"]["train"][key] = value
        repo = workflow_copy(tmp_path / f"repo_{key}", cfg)
        res = _run("snakemake", "-n", "--cores", "1", "--configfile", "config/tiny.yaml", cwd=repo)
        out = res.stdout + res.stderr
        assert res.returncode != 0 and where in out and needle in out, out[-2000:]
    cfg = tiny_workflow_config()
    cfg["synthetic"]["size"] = "97x128"  # the schema's pattern accepts it; the renderer does not
    repo = workflow_copy(tmp_path / "repo2", cfg)
    res = _run("snakemake", "-n", "--cores", "1", "--configfile", "config/tiny.yaml", cwd=repo)
    assert res.returncode != 0 and "config synthetic" in res.stdout + res.stderr and "--size" in res.stdout + res.stderr


def test_conda_env_lists_the_runtime_dependencies():
    """workflow/envs/wakd.yaml (every rule's `conda:`) holds pyproject's runtime dependencies."""
    import yaml

    env = yaml.safe_load((REPO / "workflow/envs/wakd.yaml").read_text())
    conda_names = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0] for d in env["dependencies"] if isinstance(d, str)}
    renamed = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {renamed.get(n, n) for n in (re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for d in deps)}
    assert wanted <= conda_names, wanted - conda_names
    assert (REPO / "workflow/envs/wakd.post-deploy.sh").stat().st_mode & 0o111
    for rule_file in (REPO / "workflow/rules").glob("*.smk"):
        text = rule_file.read_text()
        rules = len(re.findall(r"^rule \w+:", text, flags=re.M))
        assert rules == text.count('conda:\n        "../envs/wakd.yaml"'), rule_file.name


def test_profile_slurm_resolves_from_the_repository_root(tmp_path):
    """`snakemake --profile slurm` (the bare name) and `--profile profiles/slurm` both find the profile."""
    repo = workflow_copy(tmp_path / "repo", tiny_workflow_config())
    for profile in ("slurm", "profiles/slurm"):
        res = _run("snakemake", "--profile", profile, "-n", "--configfile", "config/tiny.yaml", cwd=repo)
        out = res.stdout + res.stderr
        assert res.returncode == 0, out[-3000:]
        assert f"Using profile {profile}" in out and "train_teacher" in out


def test_sharded_extraction_and_own_photo_index_plan(tmp_path):
    """`shards: {synthetic: 3}` plans 3 `extract_shard` jobs and one `gather` per descriptor file (no
    `extract`); `results/index/city.h5` plans indexing the city's photos with the distilled student;
    an index name missing from the config stops the plan naming it."""
    cfg = tiny_workflow_config()
    cfg["shards"] = {"synthetic": 3}
    repo = workflow_copy(tmp_path / "repo", cfg)
    res = _run("snakemake", "-n", "-p", "--cores", "2", "--configfile", "config/tiny.yaml", cwd=repo)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:", 1)[1], flags=re.M))
    assert jobs["extract_shard"] == "12" and jobs["gather"] == "4" and "extract" not in jobs
    assert "--shard 3/3 --out results/descriptors/shards/student_kd_synthetic_test.3-of-3.hdf5" in out

    res = _run("snakemake", "-n", "-p", "--cores", "2", "results/index/city.h5", "--configfile", "config/tiny.yaml",
               cwd=repo)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert re.search(r"wakd --log-file results/logs/index_city.log index --images resources/synthetic/tiny-seed0/raw/"
                     r"images --positions resources/synthetic/tiny-seed0/raw/synthetic_train_images.csv "
                     r"\S+synthetic_val_images.csv \S+synthetic_test_images.csv "
                     r".*--checkpoint results/train/synthetic/student_kd/model_best.pth.tar", out), out[-3000:]
    res = _run("snakemake", "-n", "--cores", "2", "results/index/mine.h5", "--configfile", "config/tiny.yaml",
               cwd=repo)
    assert res.returncode != 0 and "no `index: mine:` entry" in res.stdout + res.stderr

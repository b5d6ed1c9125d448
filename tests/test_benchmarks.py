"""The measuring itself, on the CPU: benchmarks/bench.py's goals, page writing, fairness and memory column,
and benchmarks/gpu_check.sh's arguments, folder and summary (dry run, and with a stand-in interpreter).

No timed assertions: the speed goals are measured by the bench, never asserted in tests.
"""

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STEPS = ["env", "test_cuda", "bench", "compile_step"]
FILES = {
    "summary.txt",
    "commands.txt",
    "env.txt",
    "test_cuda.txt",
    "bench.txt",
    "bench.json",
    "benchmarks.rst",
    "compile_step.txt",
}


def _load_bench():
    spec = importlib.util.spec_from_file_location("_bench_under_test", ROOT / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def _run_script(*args, cwd, **env):
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=600
    )


def parse_summary(path):
    """summary.txt: '#' comments, then 'key<TAB>value' lines and one line per step (7 tab-separated fields)."""
    keys, steps = {}, {}
    for line in Path(path).read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) == 7:
            name, status, rc, seconds, limit, output, last = fields
            steps[name] = {
                "status": status,
                "rc": int(rc),
                "seconds": int(seconds),
                "limit": int(limit),
                "output": output,
                "last": last,
            }
        else:
            assert len(fields) == 2, line
            keys[fields[0]] = fields[1]
    return keys, steps


# --- gpu_check.sh -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One real dry run (about a minute here: it imports torch four times), into a folder away from the cwd."""
    cwd = tmp_path_factory.mktemp("cwd")
    out = tmp_path_factory.mktemp("check") / "out"
    done = _run_script("--dry-run", str(out), cwd=cwd, PYTHON=sys.executable)
    return done, out, cwd


def test_dry_run_writes_its_folder_and_summary(dry_run):
    done, out, cwd = dry_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p.name for p in out.iterdir()} == FILES
    assert list(cwd.iterdir()) == []  # nothing written where it was started
    keys, steps = parse_summary(out / "summary.txt")
    assert keys["mode"] == "dry-run" and keys["overall"] == "dry-run"
    assert list(steps) == STEPS
    for name, step in steps.items():
        assert step["status"] == "dry-run" and step["rc"] == 0, (name, step)
        assert (out / step["output"]).is_file() and 0 <= step["seconds"] <= step["limit"]
    commands = dict(line.split("\t", 1) for line in (out / "commands.txt").read_text().splitlines())
    assert list(commands) == STEPS and "tests/test_cuda.py" in commands["test_cuda"]


def test_dry_run_checks_what_the_cpu_can(dry_run):
    _, out, _ = dry_run
    assert "tests collected" in (out / "test_cuda.txt").read_text()
    assert "--device" in (out / "compile_step.txt").read_text()  # compile_step.py parsed its options
    report = json.loads((out / "bench.json").read_text())
    section = report["devices"]["cpu"]
    assert section["cases"] and section["goals"] and section["load_before"] and section["load_after"]
    page = (out / "benchmarks.rst").read_text()
    results = page.split(".. begin-results-cpu", 1)[1].split(".. end-results-cpu", 1)[0]
    assert "Goals (" in results and "Load average" in results
    assert "No CUDA run yet" in page.split(".. begin-results-cuda", 1)[1]  # the CPU run left it alone
    assert (ROOT / "docs" / "benchmarks.rst").read_text() != page  # the copy was written, not the docs


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_without_a_gpu_it_refuses_and_writes_nothing(tmp_path):
    done = _run_script(str(tmp_path / "out"), cwd=tmp_path, PYTHON=sys.executable)
    assert done.returncode == 3
    assert "no CUDA device" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--bogus"], "unknown option '--bogus'"), (["a", "b"], "one output folder only"), (["--", "a", "b"], "one")],
)
def test_bad_arguments_exit_2(tmp_path, args, message):
    done = _run_script(*args, cwd=tmp_path, PYTHON=sys.executable)
    assert done.returncode == 2 and message in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_help(tmp_path):
    done = _run_script("--help", cwd=tmp_path)
    assert done.returncode == 0 and "usage: benchmarks/gpu_check.sh [--dry-run] [OUT_DIR]" in done.stdout
    assert list(tmp_path.iterdir()) == []


def _stand_ins(tmp_path, fail_on=None):
    """A stand-in python (and nvidia-smi) that logs its arguments and succeeds, except on ``fail_on``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fail = f'case "$*" in *{fail_on}*) echo "planted failure" >&2; exit 7;; esac' if fail_on else ""
    for name in ("python", "nvidia-smi"):
        path = bin_dir / name
        path.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "{log}"\n{fail}\necho "{name} done"\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    env = {"PYTHON": str(bin_dir / "python"), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return env, log


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_a_gpu_run_into_the_default_folder(tmp_path):
    env, log = _stand_ins(tmp_path)
    done = _run_script(cwd=tmp_path, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "gpu-check-out"
    keys, steps = parse_summary(out / "summary.txt")
    assert keys["mode"] == "run" and keys["overall"] == "ok"
    assert list(steps) == STEPS and all(step["status"] == "ok" for step in steps.values())
    assert sum(step["limit"] for step in steps.values()) + 10 <= 8 * 60  # the 8 minutes, with room to start
    assert steps["bench"]["last"] == "python done"
    calls = log.read_text()
    assert "nvidia-smi" in calls
    assert "-m pytest -q -rs -p no:cacheprovider tests/test_cuda.py" in calls
    assert (
        f"benchmarks/bench.py --device cuda --rounds 15 --json {out}/bench.json --write {out}/benchmarks.rst" in calls
    )
    assert "benchmarks/compile_step.py --device cuda" in calls
    assert (out / "benchmarks.rst").read_text() == (ROOT / "docs" / "benchmarks.rst").read_text()


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_a_failed_step_is_named_and_the_exit_is_1(tmp_path):
    env, _ = _stand_ins(tmp_path, fail_on="compile_step.py")
    done = _run_script(str(tmp_path / "out"), cwd=tmp_path, **env)
    assert done.returncode == 1
    keys, steps = parse_summary(tmp_path / "out" / "summary.txt")
    assert keys["overall"] == "failed"
    assert [name for name, step in steps.items() if step["status"] != "ok"] == ["compile_step"]
    assert steps["compile_step"]["rc"] == 7 and steps["compile_step"]["last"] == "planted failure"


# --- bench.py ---------------------------------------------------------------------------------------


def _case(dtype, results, batch=64, size=224):
    return {"dtype": dtype, "batch": batch, "size": size, "batch_bytes": 1000, "results": results}


def test_every_goal_of_issue_18_is_in_the_table():
    goals = {(g.ours, g.peer, g.dtype, g.bound) for g in bench.GOALS if g.source == "issue 18"}
    tv = "torchvision v2.CutMix"
    wanted = {
        ("ours FMix per_sample", tv, "float32", 1.0),
        ("ours FMix per_sample", tv, "uint8", 1.0),
        ("ours FMix", tv, "uint8", 1.0),
        ("ours GridMix", tv, "uint8", 1.0),
        ("ours CutMix per_sample", tv, "uint8", 1.0),
        ("ours RandomMix recipe per_sample", "timm Mixup recipe elem + copy", "float32", 0.5),
        ("ours RandomMix recipe per_sample", "timm Mixup recipe batch + copy", "float32", 1.0),
        ("ours MixUp per_sample", None, "uint8", 2.0),
        ("ours RandomMix recipe per_sample", None, "uint8", 2.0),
    }
    wanted |= {
        (name, tv, d, 1.5) for name in ("ours SaliencyMix", "ours SaliencyMix per_sample") for d in ("float32", "uint8")
    }
    assert wanted <= goals
    names = set(bench.contenders(torch.device("cpu"), torch.float32, 224)) | {bench.TV_CUTMIX}
    assert {g.ours for g in bench.GOALS} | {g.peer for g in bench.GOALS if g.peer} <= names


def test_goals_met_missed_and_not_measured():
    goals = [
        bench.Goal("a", "peer", "float32", 1.0, "t"),
        bench.Goal("b", "peer", "float32", 1.0, "t"),
        bench.Goal("a", None, "float32", 2.0, "t"),
        bench.Goal("b", None, "float32", 2.0, "t"),
        bench.Goal("a", "refusing", "float32", 1.0, "t"),
        bench.Goal("a", "peer", "uint8", 1.0, "t"),
    ]
    results = {
        "peer": {"median_ms": 10.0},
        "a": {"median_ms": 10.0, "peak_bytes": 2000.0},  # exactly at the bounds: met
        "b": {"median_ms": 10.5, "peak_bytes": 2001.0},
        "refusing": {"skipped": "refuses uint8"},
    }
    rows = bench.evaluate_goals([_case("float32", results), _case("uint8", results, size=32)], goals)
    assert [r["status"] for r in rows] == ["met", "missed", "met", "missed", "n/a", "n/a"]
    assert [r["value"] for r in rows[:4]] == [1.0, 1.05, 2.0, 2.001]
    assert rows[4]["why"] == "refuses uint8" and "was not run" in rows[5]["why"]
    table = "\n".join(bench.render_goals(rows))
    assert "2 met, 2 missed, 2 not measured" in table and table.count("**missed**") == 2


def test_the_goals_table_is_valid_rst():
    docutils_core = pytest.importorskip("docutils.core")
    rows = bench.evaluate_goals([_case("float32", {bench.TV_CUTMIX: {"median_ms": 1.0}})])
    doctree = docutils_core.publish_doctree("\n".join(bench.render_goals(rows)), settings_overrides={"report_level": 5})
    walk = getattr(doctree, "findall", None) or doctree.traverse
    tables = [node for node in walk() if node.tagname == "table"]
    assert len(tables) == 1
    rows_found = getattr(tables[0], "findall", None) or tables[0].traverse
    assert len([n for n in rows_found() if n.tagname == "row"]) == len(bench.GOALS) + 1


def test_write_replaces_only_the_sections_measured(tmp_path):
    page = tmp_path / "page.rst"
    page.write_text("top\n.. begin-a\nold a\n.. end-a\nmiddle\n.. begin-b\nold b\n.. end-b\nbottom\n")
    bench.write_sections(str(page), {"a": "new a"})
    assert page.read_text() == "top\n.. begin-a\n\nnew a\n\n.. end-a\nmiddle\n.. begin-b\nold b\n.. end-b\nbottom\n"
    with pytest.raises(SystemExit, match="begin-c"):
        bench.write_sections(str(page), {"c": "x"})


def test_the_docs_page_has_every_section_marker():
    text = (ROOT / "docs" / "benchmarks.rst").read_text()
    for name in ("results-cpu", "results-cuda", "scaling"):
        assert text.count(f".. begin-{name}\n") == 1 and text.count(f".. end-{name}\n") == 1


def _scaling(fixed_ms, ns_per_pixel, superlinear_at=None):
    def ms(batch, side):
        t = fixed_ms + ns_per_pixel * batch * side * side * 1e-6
        return t * 3 if side == superlinear_at or batch == superlinear_at else t

    return {
        "sides": {s: {"x": ms(bench.SCALING_SIDE_BATCH, s)} for s in bench.SCALING_SIDES},
        "batches": {b: {"x": ms(b, bench.SCALING_BATCH_SIDE)} for b in bench.SCALING_BATCHES},
    }


def test_scaling_analysis_names_what_is_not_linear():
    assert bench.scaling_analysis(_scaling(0.0, 2.0)) == []
    fixed = bench.scaling_analysis(_scaling(5.0, 2.0))  # 5 ms per call: side 32 is 5.1 ms, 384 is 23.9 ms
    assert len(fixed) == 2 and fixed[0].startswith("x: per pixel, side 32 costs x")
    assert "one call at side 32 still takes 5.13 ms" in fixed[0]
    assert "batch 32 costs x" in fixed[1] and "batch 512" in fixed[1]
    big = bench.scaling_analysis(_scaling(0.0, 2.0, superlinear_at=384))
    assert len(big) == 1 and "side 32 costs x0.33" in big[0] and "grows faster than the pixels" in big[0]


def test_the_load_warning():
    cores = os.cpu_count() or 1
    assert bench.load_warning(f"{cores - 0.5:.2f} 1 1", "0.1 0.1 0.1") == []
    assert "Loaded machine" in bench.load_warning("0.1 0.1 0.1", f"{cores} 1 1")[0]
    assert bench.load_warning("unknown") == []


def test_inplace_contenders_get_a_fresh_copy_each_call(monkeypatch):
    seen = []

    def writes_in_place(x, y):
        seen.append((x.data_ptr(), x.clone()))
        x.zero_()

    monkeypatch.setattr(bench, "contenders", lambda *a: {"inplace": lambda: writes_in_place})
    monkeypatch.setattr(bench, "INPLACE", frozenset({"inplace"}))
    x, _ = bench._inputs("float32", 4, 8, torch.device("cpu"))
    bench.time_case("float32", 4, 8, torch.device("cpu"), rounds=3, warmup=1)
    assert len(seen) == 4
    for _, got in seen:
        assert torch.equal(got, x)  # every call saw the original batch, not a mixed one


def test_the_plus_copy_rows_leave_the_batch_alone():
    pytest.importorskip("timm")
    fns = bench.contenders(torch.device("cpu"), torch.float32, 32)
    x, y = bench._inputs("float32", 8, 32, torch.device("cpu"))
    for name in ("timm Mixup recipe batch + copy", "timm Mixup recipe elem + copy"):
        before = x.clone()
        for _ in range(3):
            fns[name]()(x, y)
        assert torch.equal(x, before), name
    assert {"timm Mixup recipe batch", "timm Mixup recipe elem"} <= bench.INPLACE
    assert not {"timm Mixup recipe batch + copy", "timm Mixup recipe elem + copy"} & bench.INPLACE


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's VmHWM reset")
def test_the_memory_column_reads_one_batch_for_a_copy():
    pytest.importorskip("timm")
    dtype, batch, size = "float32", 16, 128  # 3 MiB: far above the page and allocator noise
    names = ["copy (floor)", "timm Mixup cutmix batch"]
    got = bench.peak_memory(names, dtype, batch, size, torch.device("cpu"))
    batch_bytes = batch * 3 * size * size * 4
    assert 0.9 <= got["copy (floor)"] / batch_bytes <= 1.2
    # timm's batch mode writes into its input and allocates one flipped copy of the batch: the fresh copy
    # it is handed is made before the peak is reset, so it reads one batch, not two.
    assert 0.8 <= got["timm Mixup cutmix batch"] / batch_bytes <= 1.3


def test_operator_counts_find_a_per_sample_loop():
    pytest.importorskip("timm")
    names = ("timm Mixup cutmix elem", "timm Mixup cutmix batch")
    small, large = (bench.count_ops("float32", b, 8, calls=1, names=names) for b in (2, 16))
    assert large["timm Mixup cutmix elem"] > bench.OPS_GROWTH * small["timm Mixup cutmix elem"]
    assert large["timm Mixup cutmix batch"] == small["timm Mixup cutmix batch"]
    lines = bench.ops_analysis({"float32": {2: small, 16: large}})
    assert len(lines) == 1 and lines[0].startswith("timm Mixup cutmix elem (float32): ")


def test_the_scaling_section_renders_as_rst():
    docutils_core = pytest.importorskip("docutils.core")
    data = _scaling(1.0, 2.0)
    data.update(device="cpu", rounds=3, load_before="0.1 0.1 0.1", load_after="0.2 0.2 0.2")
    data["ops"] = {"float32": {"16": {"x": 10, "y": 16}, "256": {"x": 10, "y": 256}}}
    text = bench.render_scaling(data)
    assert "* y (float32): 16 operators per call at batch 16, 256 at batch 256: a Python loop" in text
    assert "* x" not in text.split("Operator counts that grow")[1]
    doctree = docutils_core.publish_doctree(text, settings_overrides={"report_level": 2, "halt_level": 2})
    assert doctree is not None  # halt_level 2: any warning (a broken table, a bad list) raises


# --- a baseline in the same rounds ------------------------------------------------------------------


@pytest.fixture
def baseline(monkeypatch):
    """This checkout loaded as a baseline (a second copy of the package), unloaded after the test."""
    monkeypatch.setattr(bench, "_BASELINE", None)
    monkeypatch.setattr(bench, "_BASELINE_SRC", None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return bench.load_baseline(str(ROOT / "src"))


def test_a_baseline_is_a_second_copy_of_the_package_timed_in_the_same_rounds(baseline, tmp_path):
    import torchvision_mix

    assert baseline is not torchvision_mix and baseline.CutMix is not torchvision_mix.CutMix
    assert Path(baseline.__file__).parent.name == baseline.__name__  # the copy, not this checkout's files
    again = bench.load_baseline(str(ROOT / "src"))  # each load a copy of its own
    assert again is not baseline and again.__name__ != baseline.__name__
    out = tmp_path / "run.json"
    args = ["--quick", "--no-memory", "--extractor-batch", "0", "--baseline", str(ROOT / "src"), "--json", str(out)]
    assert bench.main([*args, "--only", "ours CutMix", "--only", "ours CutMix inplace"]) == 0
    results = json.loads(out.read_text())["devices"]["cpu"]["cases"][0]["results"]
    ours = ("ours CutMix", "ours CutMix inplace")
    assert set(results) == {bench.TV_CUTMIX, *ours, *(bench.BEFORE + name for name in ours)}
    assert all(r["median_ms"] > 0 for r in results.values())
    assert bench._in_place(bench.BEFORE + "ours CutMix inplace") and not bench._in_place(bench.BEFORE + "ours CutMix")
    head = bench.render_goals([{"goal": bench.GOALS[0], "value": 1.0, "status": "met", "before": 2.0}])[0]
    assert "commit " in head and str(ROOT) not in head  # the page names the baseline, not a path of this machine


def test_the_goals_table_has_a_before_column_from_the_baseline_rows():
    goals = [bench.Goal("a", "peer", "float32", 1.0, "t"), bench.Goal("a", None, "float32", 2.0, "t")]
    results = {
        "peer": {"median_ms": 10.0},
        "a": {"median_ms": 8.0, "peak_bytes": 1500.0},
        bench.BEFORE + "a": {"median_ms": 12.0, "peak_bytes": 3000.0},
    }
    rows = bench.evaluate_goals([_case("float32", results)], goals)
    assert [(r["value"], r["before"], r["status"]) for r in rows] == [(0.8, 1.2, "met"), (1.5, 3.0, "met")]
    table = bench.render_goals(rows)
    assert table[3].split()[:4] == ["ours", "dtype", "goal", "before"]
    assert "1.20x" in "\n".join(table) and "3.00 batches" in "\n".join(table)
    docutils_core = pytest.importorskip("docutils.core")
    docutils_core.publish_doctree("\n".join(table), settings_overrides={"report_level": 2, "halt_level": 2})


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's VmHWM reset")
def test_the_memory_column_measures_the_baseline_too(baseline):
    got = bench.peak_memory([bench.BEFORE + "ours CutMix"], "float32", 16, 128, torch.device("cpu"))
    assert 0.9 <= got[bench.BEFORE + "ours CutMix"] / (16 * 3 * 128 * 128 * 4) <= 1.3


def test_ours_and_the_baselines_copy_draw_the_same_parameters(baseline):
    """Each of ours has a generator of its own, seeded alike: a row and its 'before' row mix alike, so a per-batch
    switch (the recipe) is timed on the same choices, not on whatever the global generator gave each."""
    fns = bench.contenders(torch.device("cpu"), torch.float32, 16)
    x, y = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.arange(6)
    for name in ("ours RandomMix recipe", "ours FMix per_sample", "ours AttentiveCutMix (precomputed)"):
        ours, before = fns[name](), fns[bench.BEFORE + name]()
        for _ in range(3):
            a, b = ours(x, y), before(x, y)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), name

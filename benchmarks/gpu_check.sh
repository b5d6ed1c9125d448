#!/usr/bin/env bash
# The prepared GPU check (issue 18): in at most 8 minutes on one GPU, run
#   1. env           the GPU, driver and torch build (nvidia-smi, torch.version.cuda)
#   2. test_cuda     tests/test_cuda.py: no host sync on the mixing path (torch.cuda.set_sync_debug_mode("error")
#                    around every mix), dtype/device/memory format kept, CPU and GPU give the same mix
#   3. bench         the CUDA rows of benchmarks/bench.py: median ms, images/s, the allocator's peak extra memory,
#                    the goals table; written into a copy of docs/benchmarks.rst in the output folder
#   4. compile_step  benchmarks/compile_step.py --device cuda: a training step with the mix inside torch.compile
# and write every output, and summary.txt, into OUT_DIR (default gpu-check-out).
#
# usage: benchmarks/gpu_check.sh [--dry-run] [OUT_DIR]
#   --dry-run  no GPU needed: checks what a CPU can (the test file collects, bench.py runs its CPU smoke case and
#              writes its JSON and page, compile_step.py parses its options) and writes the same folder and summary
# environment: PYTHON (default python3), the interpreter with torch, torchvision, timm and kornia.
#
# Exit status: 0 every step passed; 1 a step failed or ran past its limit (the summary says which);
#              2 bad arguments; 3 no CUDA device (nothing run: use --dry-run on a machine without one).
set -uo pipefail

usage() { sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; }

dry_run=0
out=""
while (($#)); do
    case "$1" in
        --dry-run) dry_run=1 ;;
        -h | --help) usage; exit 0 ;;
        --) shift; break ;;
        -*) echo "gpu_check.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
        *)
            if [[ -n $out ]]; then echo "gpu_check.sh: one output folder only (got '$out' and '$1')" >&2; exit 2; fi
            out=$1 ;;
    esac
    shift
done
if (($#)); then
    if [[ -n $out || $# -gt 1 ]]; then echo "gpu_check.sh: one output folder only" >&2; exit 2; fi
    out=$1
fi
out=${out:-gpu-check-out}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}
if ! "$py" -c "import torch" 2>/dev/null; then
    echo "gpu_check.sh: '$py' cannot import torch; set PYTHON to the interpreter of the project's environment" >&2
    exit 3
fi
if ((!dry_run)) && ! "$py" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device (torch.cuda.is_available() is False for $py): nothing run." >&2
    echo "gpu_check.sh: run it where a GPU is lent, or check the script itself with --dry-run." >&2
    exit 3
fi

mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$root" || exit 2
summary=$out/summary.txt
mode=$([[ $dry_run == 1 ]] && echo dry-run || echo run)
failed=0
start_all=$SECONDS
{
    echo "# benchmarks/gpu_check.sh: one line per step: step, status, exit code, seconds, limit, output, last line"
    echo "# status: ok, failed, timeout (ran past its limit), dry-run (its CPU check passed)"
    printf 'mode\t%s\n' "$mode"
    printf 'started\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'commit\t%s\n' "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$summary"
: >"$out/commands.txt"

# step NAME LIMIT_SECONDS OUTPUT_FILE COMMAND...: run it under `timeout`, its stdout and stderr into OUTPUT_FILE.
step() {
    local name=$1 limit=$2 file=$3 status rc t0 last
    shift 3
    printf '%s\t%s\n' "$name" "$*" >>"$out/commands.txt"
    echo "== $name (limit ${limit}s): $*"
    t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$out/$file" 2>&1
    rc=$?
    if ((rc == 0)); then
        status=$([[ $mode == dry-run ]] && echo dry-run || echo ok)
    elif ((rc == 124 || rc == 137)); then
        status=timeout failed=1
    else
        status=failed failed=1
    fi
    last=$(grep -v '^[[:space:]]*$' "$out/$file" | tail -n 1 | tr '\t' ' ' | cut -c 1-200)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$((SECONDS - t0))" "$limit" "$file" "$last" \
        >>"$summary"
    echo "   $status (exit $rc, $((SECONDS - t0)) s): $last"
}

# Limits on a GPU: 30 + 90 + 120 + 220 = 460 s at most, under the 8 minutes (a dry run's are looser: no clock
# to keep, and the machines it runs on are shared). Eight files in all (a device run brings back 8).
cp docs/benchmarks.rst "$out/benchmarks.rst"
if ((dry_run)); then
    step env 60 env.txt "$py" -c "import torch, torchvision; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, 'torchvision', torchvision.__version__, 'GPU', torch.cuda.is_available())"
    step test_cuda 120 test_cuda.txt "$py" -m pytest -q -p no:cacheprovider --collect-only tests/test_cuda.py
    step bench 240 bench.txt "$py" benchmarks/bench.py --device cpu --quick --no-memory \
        --json "$out/bench.json" --write "$out/benchmarks.rst"
    step compile_step 60 compile_step.txt "$py" benchmarks/compile_step.py --help
else
    step env 30 env.txt bash -c "nvidia-smi; $py -c \"import torch, torchvision; print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'torchvision', torchvision.__version__, torch.cuda.get_device_name())\""
    step test_cuda 90 test_cuda.txt "$py" -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py
    step bench 120 bench.txt "$py" benchmarks/bench.py --device cuda --rounds 15 \
        --json "$out/bench.json" --write "$out/benchmarks.rst"
    step compile_step 220 compile_step.txt "$py" benchmarks/compile_step.py --device cuda --batch 64 --size 64 \
        --steps 20
fi
overall=$( ((failed)) && echo failed || echo "$([[ $mode == dry-run ]] && echo dry-run || echo ok)")
printf 'seconds\t%s\n' "$((SECONDS - start_all))" >>"$summary"
printf 'overall\t%s\n' "$overall" >>"$summary"
echo "== $overall in $((SECONDS - start_all)) s; summary: $summary"
exit "$failed"

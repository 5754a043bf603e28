#!/usr/bin/env bash
# Run `crashpoint certify` on the framework examples (Lightning, the Hugging Face
# Trainer, Accelerate in each hf venv, the plain torch loop and the
# torch.distributed.checkpoint loop in each Lightning venv,
# timm's CheckpointSaver in each timm venv, Keras's BackupAndRestore in each keras venv,
# Composer's Trainer in each composer venv, mmengine's Runner in each mmengine venv),
# one bounded run per (venv, configuration), and write a JSON report and a text log
# for each.
#
#   examples/certify-frameworks.sh OUT_DIR [options]
#
# The venvs come from examples/make-venv.sh: every directory
# ${CRASHPOINT_VENVS:-$HOME/.cache/crashpoint-venvs}/lightning-*, hf-*, timm-*, keras-*, composer-* and mmengine-* that
# make-venv.sh finished is used (or name them with --venv, repeatable).
#
# Options:
#   --cases N        crash points per layout (default 8)
#   --max-steps N    CRASHPOINT_MAX_STEPS (default 8; the examples save every 4 steps)
#   --layouts LIST   comma-separated layouts (default relative)
#   --only REGEX     run only the configurations whose name matches (e.g. 'lightning-2.1.3')
#   --venv DIR       a venv to use instead of the discovered ones (repeatable)
#   --dry-run        print the commands, run nothing
# Environment: CRASHPOINT (the crashpoint binary, default ./target/release/crashpoint),
# CRASHPOINT_VENVS, CRASHPOINT_EXTRA_ARGS (more flags for every certify, e.g. '--crashes 2').
#
# Every certify runs with --jobs 1: torch subjects are heavy, and the run is
# traced. Budget: about 20-30 s per case on two cores (each case is several
# runs of a torch program under ptrace).
#
# Exit status: 0 when every certify ran (whatever its verdict: a framework
# failing is a result, not an error; see OUT_DIR/summary.txt), 2 on bad usage
# or when a certify could not run at all (its exit status 2).
set -euo pipefail

usage() {
    sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

[[ $# -ge 1 ]] || usage
case $1 in -h|--help) usage ;; esac
out=$1
shift
cases=8
max_steps=8
layouts=relative
only=""
dry=0
venvs=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --cases) cases=$2; shift 2 ;;
        --max-steps) max_steps=$2; shift 2 ;;
        --layouts) layouts=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --venv) venvs+=("$2"); shift 2 ;;
        --dry-run) dry=1; shift ;;
        -h|--help) usage ;;
        *) echo "certify-frameworks.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
crashpoint=${CRASHPOINT:-./target/release/crashpoint}
if [[ $dry -eq 0 && ! -x $crashpoint ]]; then
    echo "certify-frameworks.sh: no crashpoint binary at $crashpoint (cargo build --release, or set CRASHPOINT)" >&2
    exit 2
fi
root=${CRASHPOINT_VENVS:-$HOME/.cache/crashpoint-venvs}
if [[ ${#venvs[@]} -eq 0 ]]; then
    shopt -s nullglob
    for d in "$root"/lightning-* "$root"/hf-* "$root"/timm-* "$root"/keras-* "$root"/composer-* "$root"/mmengine-*; do
        [[ -f $d/.crashpoint-venv-ok ]] && venvs+=("$d")
    done
    shopt -u nullglob
fi
if [[ ${#venvs[@]} -eq 0 ]]; then
    echo "certify-frameworks.sh: no venvs under $root; make them with examples/make-venv.sh" >&2
    exit 2
fi

mkdir -p -- "$out"
summary=$out/summary.txt
: > "$summary"
read -r -a extra_args <<< "${CRASHPOINT_EXTRA_ARGS:-}"
status=0

# name | --resume-arg | example | example options
configs_for() {
    local venv=$1 base
    base=$(basename -- "$venv")
    case $base in
        lightning-*)
            echo "$base-dirpath-link|path|lightning/train.py|--every-n-train-steps 4"
            echo "$base-dirpath-link-last|last|lightning/train.py|--every-n-train-steps 4"
            echo "$base-default_root_dir|path|lightning/train.py|--every-n-train-steps 4 --root default_root_dir"
            echo "$base-default_root_dir-last|last|lightning/train.py|--every-n-train-steps 4 --root default_root_dir"
            echo "$base-default_root_dir-sub|checkpoints/last.ckpt|lightning/train.py|--every-n-train-steps 4 --root default_root_dir"
            echo "$base-dirpath-copy|path|lightning/train.py|--every-n-train-steps 4 --save-last copy --save-top-k 0"
            echo "$base-dirpath-copy-last|last|lightning/train.py|--every-n-train-steps 4 --save-last copy --save-top-k 0"
            echo "$base-default_root_dir-copy-last|last|lightning/train.py|--every-n-train-steps 4 --root default_root_dir --save-last copy --save-top-k 0"
            # The plain torch loop needs only torch, which this venv has.
            echo "$base-torch-loop-inplace|last|torch-loop/train.py|--every 4"
            echo "$base-torch-loop-atomic|last|torch-loop/train.py|--every 4 --save atomic --keep-steps"
            echo "$base-torch-dcp-last|last|torch-dcp/train.py|--every 4"
            echo "$base-torch-dcp-find-any|last|torch-dcp/train.py|--every 4 --find any"
            ;;
        hf-*)
            echo "$base-last|last|hf-trainer/train.py|--save-steps 4"
            echo "$base-newest|newest|hf-trainer/train.py|--save-steps 4"
            echo "$base-accelerate-last|last|accelerate/train.py|--every 4"
            # Not `path`: the Trainer writes no last.ckpt, and certify refuses a
            # resume file the subject never makes (exit 2, with this advice).
            ;;
        keras-*)
            # Keras 3 on its torch backend (the example sets KERAS_BACKEND).
            echo "$base-backup-last|last|keras/train.py|--epoch-steps 2"
            echo "$base-backup-double|last|keras/train.py|--epoch-steps 2 --double-checkpoint"
            ;;
        timm-*)
            # Epochs of 2 steps: a CheckpointSaver save every 2 steps.
            echo "$base-saver-last|last|timm/train.py|--epoch-steps 2"
            echo "$base-saver-rng-once|last|timm/train.py|--epoch-steps 2 --rng once"
            ;;
        composer-*)
            # A save every 2 batches; autoresume (`last`), without and with
            # save_overwrite.
            echo "$base-autoresume|last|composer/train.py|--save-every 2"
            echo "$base-autoresume-overwrite|last|composer/train.py|--save-every 2 --overwrite"
            ;;
        mmengine-*)
            # CheckpointHook every 2 iterations, keeping all and keeping one.
            echo "$base-resume|last|mmengine/train.py|--interval 2"
            echo "$base-resume-keep-1|last|mmengine/train.py|--interval 2 --keep 1"
            ;;
    esac
}

for venv in "${venvs[@]}"; do
    py=$venv/bin/python
    while IFS='|' read -r name resume script opts; do
        [[ -z $name ]] && continue
        if [[ -n $only && ! $name =~ $only ]]; then
            continue
        fi
        read -r -a opt_arr <<< "$opts"
        cmd=("$crashpoint" certify --jobs 1 --layouts "$layouts" --cases "$cases"
             --max-steps "$max_steps" --resume-arg "$resume" --json "$out/$name.json"
             "${extra_args[@]+"${extra_args[@]}"}"
             -- "$py" "$here/$script" "${opt_arr[@]}")
        if [[ $dry -eq 1 ]]; then
            printf '%q ' "${cmd[@]}"; echo
            continue
        fi
        echo "== $name" >&2
        start=$(date +%s)
        rc=0
        "${cmd[@]}" > "$out/$name.txt" 2>&1 || rc=$?
        secs=$(( $(date +%s) - start ))
        verdict=$(tail -n 1 "$out/$name.txt")
        printf '%-40s exit %d  %4ds  %s\n' "$name" "$rc" "$secs" "$verdict" | tee -a "$summary" >&2
        if [[ $rc -eq 2 ]]; then
            status=2
        fi
    done < <(configs_for "$venv")
done
exit $status

#!/usr/bin/env bash
# Make a virtual environment, outside the repository, with one framework version
# for the framework examples (examples/lightning, examples/hf-trainer,
# examples/accelerate, examples/torch-loop, examples/torch-dcp, examples/timm,
# examples/keras, examples/composer, examples/mmengine).
#
#   examples/make-venv.sh lightning 2.1.3      # pytorch-lightning 2.1.3 + a torch it works with
#   examples/make-venv.sh lightning 2.6.6
#   examples/make-venv.sh hf 5.24.0            # transformers 5.24.0 + accelerate + torch
#   examples/make-venv.sh timm 1.0.31          # timm 1.0.31 + the torch its torchvision needs
#   examples/make-venv.sh keras 3.15.1         # keras 3.15.1 + h5py + torch (its torch backend)
#   examples/make-venv.sh composer 0.32.1      # mosaicml (Composer) 0.32.1 + the torch it pins
#   examples/make-venv.sh mmengine 0.10.7      # OpenMMLab's mmengine 0.10.7 + torch 2.5.1, numpy<2
#
# Where: ${CRASHPOINT_VENVS:-$HOME/.cache/crashpoint-venvs}/<framework>-<version>
# (override the whole path with --dir DIR). Prints the venv's python at the end.
#
# Options:
#   --torch VER     torch version (default: chosen per framework version, see below)
#   --extra SPEC    one more pip requirement (repeatable), e.g. --extra 'numpy<2'
#   --dir DIR       the venv directory
#   --force         remove an existing venv of that name first
# Environment: PYTHON (the interpreter to make the venv with, default python3).
#
# torch comes from the package index (its default wheels are CUDA builds; they run
# on CPU). About 2.5 GB and a few minutes per venv.
set -euo pipefail

usage() {
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

[[ $# -ge 2 ]] || usage
framework=$1
version=$2
shift 2

torch_ver=""
extras=()
dir=""
force=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --torch) torch_ver=$2; shift 2 ;;
        --extra) extras+=("$2"); shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) usage ;;
        *) echo "make-venv.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

# Framework packages and the torch (and numpy) each version works with. Old
# framework releases break on new torch/numpy (PL 2.1 predates numpy 2 and
# torch >= 2.2 API changes), so they get the torch of their time.
case $framework in
    lightning|pl|pytorch-lightning)
        framework=lightning
        pkgs=("pytorch-lightning==$version")
        case $version in
            2.0.*|2.1.*)
                : "${torch_ver:=2.1.2}"
                extras+=("numpy<2")
                ;;
            2.2.*|2.3.*)
                : "${torch_ver:=2.3.1}"
                extras+=("numpy<2")
                ;;
        esac
        ;;
    hf|transformers)
        framework=hf
        pkgs=("transformers==$version" "accelerate")
        ;;
    timm)
        # timm needs torchvision, and a torchvision release pins one torch
        # release: let pip pick the pair unless --torch says otherwise.
        pkgs=("timm==$version")
        torch_ver=${torch_ver:-any}
        ;;
    keras)
        pkgs=("keras==$version" "h5py")
        ;;
    composer|mosaicml)
        # Composer pins a torch range of its own: let pip pick within it.
        framework=composer
        pkgs=("mosaicml==$version")
        torch_ver=${torch_ver:-any}
        ;;
    mmengine)
        # mmengine 0.10 is from early 2025: the torch and numpy of its time.
        # Not torch 2.6 or later: their torch.load(weights_only=True) default
        # refuses mmengine's own checkpoints (HistoryBuffer), so no resume works.
        pkgs=("mmengine==$version")
        : "${torch_ver:=2.5.1}"
        extras+=("numpy<2")
        ;;
    *)
        echo "make-venv.sh: unknown framework '$framework' (lightning, hf, timm, keras, composer or mmengine)" >&2
        exit 2
        ;;
esac

if [[ $torch_ver == any ]]; then
    :
elif [[ -n $torch_ver ]]; then
    pkgs+=("torch==$torch_ver")
else
    pkgs+=("torch")
fi
pkgs+=("${extras[@]+"${extras[@]}"}")

root=${CRASHPOINT_VENVS:-$HOME/.cache/crashpoint-venvs}
: "${dir:=$root/$framework-$version}"
python=${PYTHON:-python3}

if [[ -e $dir ]]; then
    if [[ $force -eq 1 ]]; then
        rm -rf -- "$dir"
    elif [[ -x $dir/bin/python && -f $dir/.crashpoint-venv-ok ]]; then
        echo "make-venv.sh: $dir exists (use --force to remake it)" >&2
        echo "$dir/bin/python"
        exit 0
    else
        echo "make-venv.sh: $dir exists but is incomplete; remaking it" >&2
        rm -rf -- "$dir"
    fi
fi

mkdir -p -- "$(dirname -- "$dir")"
echo "make-venv.sh: creating $dir with: ${pkgs[*]}" >&2
"$python" -m venv -- "$dir"
"$dir/bin/python" -m pip install --quiet --upgrade pip
"$dir/bin/python" -m pip install "${pkgs[@]}"

# Smoke check: the imports the examples need, on CPU.
"$dir/bin/python" - "$framework" <<'PY'
import sys
import torch, numpy
fw = sys.argv[1]
if fw == "lightning":
    import pytorch_lightning as pl
    print("pytorch_lightning", pl.__version__, "torch", torch.__version__, "numpy", numpy.__version__)
elif fw == "keras":
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    print("keras", keras.__version__, "backend", keras.backend.backend(), "torch", torch.__version__,
          "numpy", numpy.__version__)
elif fw == "mmengine":
    import mmengine
    from mmengine.runner import Runner
    print("mmengine", mmengine.__version__, "torch", torch.__version__, "numpy", numpy.__version__)
elif fw == "composer":
    import composer
    from composer.callbacks import CheckpointSaver
    print("composer", composer.__version__, "torch", torch.__version__, "numpy", numpy.__version__)
elif fw == "timm":
    import timm
    from timm.utils import CheckpointSaver
    print("timm", timm.__version__, "torch", torch.__version__, "numpy", numpy.__version__)
else:
    import transformers, accelerate
    print("transformers", transformers.__version__, "accelerate", accelerate.__version__,
          "torch", torch.__version__, "numpy", numpy.__version__)
PY
"$dir/bin/python" -m pip freeze > "$dir/requirements.freeze.txt"
touch "$dir/.crashpoint-venv-ok"
echo "$dir/bin/python"

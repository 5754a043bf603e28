#!/usr/bin/env python3
"""A loop checkpointed by torch.distributed.checkpoint (DCP), torchtitan's way, speaking the crashpoint subject protocol v1.

Every `--every N` steps (and at the last step) the loop calls
`torch.distributed.checkpoint.save(state, checkpoint_id=CKPT_DIR/step-<N>)`, in a single
process. DCP (read in torch's `distributed/checkpoint/filesystem.py`) makes the folder,
writes `__0_0.distcp` and fsyncs it, writes `.metadata.tmp`, fsyncs it, removes an
old `.metadata` and renames the temporary file to `.metadata`; the folder itself is never
fsynced. Then, as torchtitan's CheckpointManager does, the oldest `step-<N>` folders past
`--keep K` are removed with `shutil.rmtree`. The state is the model's and the
optimizer's (`get_state_dict`) plus the step, the data position and torch's RNG.

Resume: CRASHPOINT_RESUME is a folder (relative to the working directory), loaded with
`dcp.load` after `set_state_dict`, or `last`: the highest-numbered `step-<N>` folder that
holds `.metadata`, as torchtitan finds it, or a fresh start when there is none
(`--find any`: the highest-numbered folder, whether its save finished or not, as a
naive loader does). CPU only, no downloads: the
adapter's tiny MLP and synthetic data. Exit status: 0 done, 1 resume failed (reason on
stderr), 2 usage.
"""

import argparse
import os
import re
import shutil
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "adapter"))

import crashpoint_adapter as ca  # noqa: E402

PROG = "torch-dcp/train.py"

N_SAMPLES = 64
BATCH = 4                 # 16 steps per epoch
BASE_LR = 0.01
STEP_DIR = re.compile(r"^step-(\d+)$")


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG, description="A loop checkpointed by torch.distributed.checkpoint (protocol v1).")
    ap.add_argument("--every", type=int, default=4, metavar="N",
                    help="save every N steps and at the last step (default: 4)")
    ap.add_argument("--keep", type=int, default=2, metavar="K",
                    help="step-<N> folders kept (default: 2)")
    ap.add_argument("--find", choices=("metadata", "any"), default="metadata",
                    help="what `last` resumes from: the newest folder with .metadata "
                         "(default, torchtitan) or the newest folder")
    args = ap.parse_args(argv)
    if args.every < 1 or args.keep < 1:
        ap.error("--every and --keep must be at least 1")
    return args


def step_dirs(ckpt_dir, need_metadata):
    """(step, path) of the step-<N> folders, lowest first."""
    try:
        names = os.listdir(ckpt_dir)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = STEP_DIR.match(name)
        path = os.path.join(ckpt_dir, name)
        if m and os.path.isdir(path):
            if not need_metadata or os.path.isfile(os.path.join(path, ".metadata")):
                out.append((int(m.group(1)), path))
    return sorted(out)


def main(argv):
    args = parse_args(argv)
    proto = ca.protocol_or_exit(PROG)

    warnings.filterwarnings("ignore")
    import torch
    import torch.distributed.checkpoint as dcp
    from torch import nn
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    x, y, model = ca.tiny_regression(proto.seed, samples=N_SAMPLES)
    opt = torch.optim.AdamW(model.parameters(), lr=BASE_LR)
    step, epoch, pos = 0, 0, 0
    resumed_from = None

    def full_state():
        msd, osd = get_state_dict(model, opt)
        return {"model": msd, "optim": osd,
                "progress": {"step": step, "epoch": epoch, "pos": pos},
                "rng": torch.get_rng_state()}

    path = proto.resume
    if path == "last":
        found = step_dirs(proto.ckpt_dir, args.find == "metadata")
        # Nothing found: start from scratch, as torchtitan (and Lightning's
        # ckpt_path="last") do.
        path = found[-1][1] if found else None
        if path is None:
            ca.log(PROG, f"no step-<N> folder in {proto.ckpt_dir}: starting from scratch")
    if path is not None:
        try:
            state = full_state()
            dcp.load(state, checkpoint_id=path)
            set_state_dict(model, opt, model_state_dict=state["model"],
                           optim_state_dict=state["optim"])
            torch.set_rng_state(state["rng"])
            p = state["progress"]
            step, epoch, pos = int(p["step"]), int(p["epoch"]), int(p["pos"])
        except Exception as e:                  # noqa: BLE001 - the reason goes to stderr
            ca.log(PROG, f"error: cannot resume from {path}: {type(e).__name__}: {e}")
            return 1
        if step > proto.max_steps:
            ca.log(PROG, f"error: checkpoint at step {step} is past max steps {proto.max_steps}")
            return 1
        resumed_from = step
        ca.log(PROG, f"resumed from step {step} ({path})")

    os.makedirs(proto.ckpt_dir, exist_ok=True)
    model.train()
    while step < proto.max_steps:
        idx = ca.epoch_batch(proto.seed, epoch, pos, BATCH, N_SAMPLES)
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        pos += BATCH
        if pos >= N_SAMPLES:
            epoch, pos = epoch + 1, 0
        if step % args.every == 0 or step == proto.max_steps:
            folder = os.path.join(proto.ckpt_dir, f"step-{step}")
            dcp.save(full_state(), checkpoint_id=folder)
            ca.append_saved_event(proto.events, step, folder)
            for _, old in step_dirs(proto.ckpt_dir, False)[:-args.keep]:
                shutil.rmtree(old)
            ca.maybe_kill_after_save(step)

    msd, osd = get_state_dict(model, opt)
    parts = {
        "params": msd,
        "optimizer": osd,
        "rng": {"torch": torch.get_rng_state()},
        "data": {"epoch": epoch, "pos": pos},
        "counters": {"step": step},
    }
    report = ca.torch_state_report(step, parts, resumed_from,
                                   extra={"framework": f"torch {torch.__version__} dcp"})
    ca.write_state_file(proto.state_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""A hand-written PyTorch training loop that speaks the crashpoint subject protocol v1.

No framework: the loop, the checkpoint and the resume are plain torch, as in most
tutorials and research code. CPU only, no downloads: a tiny MLP built in code,
synthetic regression data made from CRASHPOINT_SEED, AdamW, a LambdaLR warm-up,
dropout (torch RNG), a data order from a per-epoch generator, mid-epoch resumes.

How a save is written (`--save`):

  inplace  torch.save(state, CKPT_DIR/last.pt), and the same over a step file when
           --keep-steps is set: what most hand-written loops do. torch.save opens the
           final name for writing (truncating the previous checkpoint) and writes it
           in pieces, so a kill in between leaves last.pt empty or torn, and the only
           good copy is gone (the default, to show what crashpoint finds);
  atomic   torch.save to a temporary file in the same directory, fsync, os.replace
           over last.pt, fsync of the directory: a kill leaves the old or the new
           checkpoint, never a torn one. The checkpoint directory itself is made
           with os.makedirs and never made durable, as in most careful code, so a
           power loss can still lose it;
  durable  atomic, and the directory's parent is fsynced after os.makedirs.

Resume: CRASHPOINT_RESUME is a checkpoint path (relative to the working directory)
or `last` (CKPT_DIR/last.pt). Exit status: 0 done, 1 resume failed (reason on
stderr), 2 usage.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "adapter"))

import crashpoint_adapter as ca  # noqa: E402

PROG = "torch-loop/train.py"

N_SAMPLES = 64
BATCH = 4                 # 16 steps per epoch
BASE_LR = 0.01
WARMUP = 4


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG, description="A plain PyTorch loop for crashpoint (protocol v1).")
    ap.add_argument("--save", choices=("inplace", "atomic", "durable"), default="inplace",
                    help="how a checkpoint is written (default: inplace, torch.save over last.pt)")
    ap.add_argument("--every", type=int, default=4, metavar="N",
                    help="save every N steps and at the last step (default: 4)")
    ap.add_argument("--keep-steps", action="store_true",
                    help="also write step-N.pt at every save (never removed)")
    args = ap.parse_args(argv)
    if args.every < 1:
        ap.error("--every must be at least 1")
    return args


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path):
    """os.makedirs, and each directory made is fsynced into its parent."""
    missing = []
    p = os.path.abspath(path)
    while not os.path.lexists(p):
        missing.append(p)
        p = os.path.dirname(p)
    for d in reversed(missing):
        os.mkdir(d)
        fsync_dir(os.path.dirname(d))


def save(args, proto, state, step):
    """Writes the checkpoint of `step`, announces it, returns nothing."""
    import torch
    names = ["last.pt"] + ([f"step-{step}.pt"] if args.keep_steps else [])
    for name in names:
        final = os.path.join(proto.ckpt_dir, name)
        if args.save == "inplace":
            torch.save(state, final)
            continue
        tmp = os.path.join(proto.ckpt_dir, f".{name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(proto.ckpt_dir)
    if proto.events:
        ca.append_saved_event(proto.events, step, os.path.join(proto.ckpt_dir, "last.pt"))


def main(argv):
    args = parse_args(argv)
    proto = ca.protocol_or_exit(PROG)

    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


    x, y, model = ca.tiny_regression(proto.seed, samples=N_SAMPLES)
    opt = torch.optim.AdamW(model.parameters(), lr=BASE_LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / WARMUP))
    step, epoch, pos = 0, 0, 0
    resumed_from = None

    if proto.resume is not None:
        path = os.path.join(proto.ckpt_dir, "last.pt") if proto.resume == "last" else proto.resume
        try:
            st = torch.load(path, weights_only=True)
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            torch.set_rng_state(st["rng"])
            step, epoch, pos = int(st["step"]), int(st["epoch"]), int(st["pos"])
        except Exception as e:                  # noqa: BLE001 - the reason goes to stderr
            ca.log(PROG, f"error: cannot resume from {path}: {type(e).__name__}: {e}")
            return 1
        if step > proto.max_steps:
            ca.log(PROG, f"error: checkpoint at step {step} is past max steps {proto.max_steps}")
            return 1
        resumed_from = step
        ca.log(PROG, f"resumed from step {step}")

    if args.save == "durable":
        makedirs_durable(proto.ckpt_dir)
    else:
        os.makedirs(proto.ckpt_dir, exist_ok=True)
    model.train()
    while step < proto.max_steps:
        idx = ca.epoch_batch(proto.seed, epoch, pos, BATCH, N_SAMPLES)
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        pos += BATCH
        if pos >= N_SAMPLES:
            epoch, pos = epoch + 1, 0
        if step % args.every == 0 or step == proto.max_steps:
            save(args, proto, {
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
                "step": step, "epoch": epoch, "pos": pos,
            }, step)

    parts = {
        "params": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "data": {"epoch": epoch, "pos": pos},
        "counters": {"step": step},
    }
    report = ca.torch_state_report(step, parts, resumed_from,
                                   extra={"framework": f"torch {torch.__version__}"})
    ca.write_state_file(proto.state_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

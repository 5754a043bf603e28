#!/usr/bin/env python3
"""A training loop checkpointed by timm's CheckpointSaver, speaking the crashpoint subject protocol v1.

The checkpoint code is timm's own, as its train.py uses it: `CheckpointSaver(model,
optimizer, checkpoint_dir=CKPT_DIR, decreasing=True, max_history=K)` and, at the end of
every epoch, `saver.save_checkpoint(epoch, metric=loss)`. That writes
`tmp.pth.tar` with torch.save, replaces `last.pth.tar` with it (unlinking the old one
first, "for Windows support"), hard-links `checkpoint-<epoch>.pth.tar` to it for the K
best epochs (removing the worst) and `model_best.pth.tar` to the best one. Nothing is
fsynced. A resume is timm's `resume_checkpoint(model, path, optimizer)`, which returns
the epoch to start from; the learning rate comes from timm's CosineLRScheduler, stepped
by epoch as train.py steps it (`step(start_epoch)` after a resume).

CPU only, no downloads: a tiny MLP built in code (timm's savers take any nn.Module),
synthetic regression data from CRASHPOINT_SEED, timm's `create_optimizer_v2('adamw')`,
dropout (torch RNG), a data order drawn from (seed, epoch). timm's checkpoints hold no
RNG state: with `--rng per-epoch` (the default) the loop seeds torch's RNG from (seed,
epoch) at the start of every epoch (and after the last), so an epoch-granular resume is
exact; `--rng once`
seeds it once at start, as timm's train.py does, and every resume then trains on other
dropout masks.

Resume: CRASHPOINT_RESUME is a checkpoint path (relative to the working directory) or
`last` (CKPT_DIR/last.pth.tar, what `--resume` is usually given). Exit status: 0 done,
1 resume failed (reason on stderr), 2 usage.
"""

import argparse
import logging
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "adapter"))

import crashpoint_adapter as ca  # noqa: E402

PROG = "timm/train.py"

BATCH = 4
BASE_LR = 0.01


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG, description="A loop checkpointed by timm's CheckpointSaver (protocol v1).")
    ap.add_argument("--epoch-steps", type=int, default=2, metavar="N",
                    help="steps in an epoch; a checkpoint is saved after each epoch (default: 2)")
    ap.add_argument("--history", type=int, default=2, metavar="K",
                    help="CheckpointSaver(max_history=K): checkpoint-<epoch> files kept (default: 2)")
    ap.add_argument("--rng", choices=("per-epoch", "once"), default="per-epoch",
                    help="seed torch's RNG at every epoch (default) or once at start, as timm's train.py")
    args = ap.parse_args(argv)
    if args.epoch_steps < 1 or args.history < 1:
        ap.error("--epoch-steps and --history must be at least 1")
    return args


def main(argv):
    args = parse_args(argv)
    proto = ca.protocol_or_exit(PROG)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)

    import timm
    import torch
    from timm.models import resume_checkpoint
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler
    from timm.utils import CheckpointSaver
    from torch import nn

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    samples = BATCH * args.epoch_steps
    epochs = -(-proto.max_steps // args.epoch_steps)
    x, y, model = ca.tiny_regression(proto.seed, samples=samples)
    opt = create_optimizer_v2(model, "adamw", lr=BASE_LR, weight_decay=0.01)
    sched = CosineLRScheduler(opt, t_initial=max(epochs, 1), warmup_t=1,
                              warmup_lr_init=BASE_LR / 10)
    if args.rng == "once":
        torch.manual_seed(ca.derive_seed(proto.seed, "train"))

    def seed_epoch(e):
        # per-epoch: the RNG at the start of epoch e is a function of (seed, e)
        # alone, so a run resumed there (even after the last epoch) has it.
        if args.rng == "per-epoch":
            torch.manual_seed(ca.derive_seed(proto.seed, f"train-{e}"))

    start_epoch, resumed_from = 0, None
    if proto.resume is not None:
        path = (os.path.join(proto.ckpt_dir, "last.pth.tar") if proto.resume == "last"
                else proto.resume)
        try:
            start_epoch = resume_checkpoint(model, path, optimizer=opt, log_info=False)
        except Exception as e:                  # noqa: BLE001 - the reason goes to stderr
            ca.log(PROG, f"error: cannot resume from {path}: {type(e).__name__}: {e}")
            return 1
        if start_epoch is None:
            ca.log(PROG, f"error: {path} holds no epoch")
            return 1
        resumed_from = min(start_epoch * args.epoch_steps, proto.max_steps)
        if start_epoch * args.epoch_steps > proto.max_steps:
            ca.log(PROG, f"error: checkpoint of epoch {start_epoch - 1} is past max steps "
                         f"{proto.max_steps}")
            return 1
        ca.log(PROG, f"resumed at epoch {start_epoch} (step {resumed_from})")
    if start_epoch > 0:
        sched.step(start_epoch)

    os.makedirs(proto.ckpt_dir, exist_ok=True)
    saver = CheckpointSaver(model=model, optimizer=opt, checkpoint_dir=proto.ckpt_dir,
                            recovery_dir=proto.ckpt_dir, decreasing=True,
                            max_history=args.history)
    step = start_epoch * args.epoch_steps
    epoch = start_epoch
    model.train()
    seed_epoch(epoch)
    while step < proto.max_steps:
        pos = 0
        while pos < samples and step < proto.max_steps:
            idx = ca.epoch_batch(proto.seed, epoch, pos, BATCH, samples)
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            pos += BATCH
        if pos < samples:
            break                               # max steps mid-epoch: no end of epoch
        with torch.no_grad():
            model.eval()
            metric = float(nn.functional.mse_loss(model(x), y))
            model.train()
        saver.save_checkpoint(epoch, metric=metric)
        ca.append_saved_event(proto.events, step, os.path.join(proto.ckpt_dir, "last.pth.tar"))
        ca.maybe_kill_after_save(step)
        sched.step(epoch + 1, metric)
        epoch += 1
        seed_epoch(epoch)

    parts = {
        "params": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": {"lr": [g["lr"] for g in opt.param_groups]},
        "rng": {"torch": torch.get_rng_state()},
        "data": {"epoch": epoch, "pos": step - epoch * args.epoch_steps},
        "counters": {"step": step},
    }
    report = ca.torch_state_report(step, parts, resumed_from,
                                   extra={"framework": f"timm {timm.__version__}, "
                                                       f"torch {torch.__version__}"})
    ca.write_state_file(proto.state_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

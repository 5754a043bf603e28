#!/usr/bin/env python3
"""A training loop checkpointed by Hugging Face Accelerate, speaking the crashpoint subject protocol v1.

Checkpoints are written by `Accelerator.save_state()` itself, with automatic checkpoint
naming: `CRASHPOINT_CKPT_DIR/checkpoints/checkpoint_<i>/` (i counts the saves), the
oldest removed with `shutil.rmtree` before a save when there are `--total-limit` of them.
`CRASHPOINT_RESUME=last` becomes `accelerator.load_state()`, which picks the
highest-numbered `checkpoint_<i>` (complete or not, as Accelerate does); any other value
is passed as `load_state(path)`.

CPU only, no downloads: a tiny MLP built in code, synthetic data from CRASHPOINT_SEED,
AdamW, a LambdaLR warm-up, dropout (torch RNG). The position in the data (epoch, index)
and the step live in an object registered with `register_for_checkpointing`, so
Accelerate saves them (`custom_checkpoint_0.pkl`); it saves and restores the RNG states
itself (`random_states_0.pkl`). After a resume the loop sets
`project_configuration.iteration` past the loaded folder, as Accelerate's docs ask.
Exit status: 0 done, 1 resume failed (reason on stderr), 2 usage.
"""

import argparse
import os
import random
import re
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "adapter"))

import crashpoint_adapter as ca  # noqa: E402

PROG = "accelerate/train.py"

N_SAMPLES = 64
BATCH = 4                 # 16 steps per epoch
BASE_LR = 0.01
WARMUP = 4


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG, description="A loop checkpointed by Accelerate's save_state (protocol v1).")
    ap.add_argument("--every", type=int, default=4, metavar="N",
                    help="save_state() every N steps and at the last step (default: 4)")
    ap.add_argument("--total-limit", type=int, default=2, metavar="K",
                    help="ProjectConfiguration(total_limit=K) (default: 2)")
    args = ap.parse_args(argv)
    if args.every < 1 or args.total_limit < 1:
        ap.error("--every and --total-limit must be at least 1")
    return args


class Progress:
    """The step and the position in the data: saved by Accelerate as a custom object."""

    def __init__(self):
        self.step, self.epoch, self.pos = 0, 0, 0

    def state_dict(self):
        return {"step": self.step, "epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, st):
        self.step, self.epoch, self.pos = int(st["step"]), int(st["epoch"]), int(st["pos"])


def folder_number(path):
    """The number Accelerate sorts checkpoint folders by (its own regular expression)."""
    return list(map(int, re.findall(r"[\/]?([0-9]+)(?=[^\/]*$)", path)))[0]


def main(argv):
    args = parse_args(argv)
    proto = ca.protocol_or_exit(PROG)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch
    from torch import nn
    from accelerate import Accelerator
    from accelerate import __version__ as acc_version
    from accelerate.utils import ProjectConfiguration

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


    # Every global RNG from the seed: Accelerate saves and restores all three.
    x, y, model = ca.tiny_regression(proto.seed, samples=N_SAMPLES)
    np.random.seed(ca.derive_seed(proto.seed, "numpy", bits=32))
    random.seed(ca.derive_seed(proto.seed, "python"))
    opt = torch.optim.AdamW(model.parameters(), lr=BASE_LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / WARMUP))

    config = ProjectConfiguration(project_dir=proto.ckpt_dir, automatic_checkpoint_naming=True,
                                  total_limit=args.total_limit)
    accelerator = Accelerator(cpu=True, project_config=config)
    model, opt, sched = accelerator.prepare(model, opt, sched)
    progress = Progress()
    accelerator.register_for_checkpointing(progress)
    resumed_from = None

    if proto.resume is not None:
        try:
            if proto.resume == "last":
                root = os.path.join(proto.ckpt_dir, "checkpoints")
                folders = [os.path.join(root, f) for f in os.listdir(root)]
                accelerator.load_state()
                loaded = max(folders, key=folder_number)
            else:
                accelerator.load_state(proto.resume)
                loaded = proto.resume
            config.iteration = folder_number(os.path.normpath(loaded)) + 1
        except Exception as e:                  # noqa: BLE001 - the reason goes to stderr
            ca.log(PROG, f"error: cannot resume from {proto.resume}: {type(e).__name__}: {e}")
            return 1
        if progress.step > proto.max_steps:
            ca.log(PROG, f"error: checkpoint at step {progress.step} is past max steps")
            return 1
        resumed_from = progress.step
        ca.log(PROG, f"resumed from step {progress.step}")

    model.train()
    while progress.step < proto.max_steps:
        idx = ca.epoch_batch(proto.seed, progress.epoch, progress.pos, BATCH, N_SAMPLES)
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        accelerator.backward(loss)
        opt.step()
        sched.step()
        progress.step += 1
        progress.pos += BATCH
        if progress.pos >= N_SAMPLES:
            progress.epoch, progress.pos = progress.epoch + 1, 0
        if progress.step % args.every == 0 or progress.step == proto.max_steps:
            where = accelerator.save_state()
            if proto.events:
                ca.append_saved_event(proto.events, progress.step, where)

    parts = {
        "params": accelerator.unwrap_model(model).state_dict(),
        "optimizer": opt.optimizer.state_dict() if hasattr(opt, "optimizer") else opt.state_dict(),
        "scheduler": sched.scheduler.state_dict() if hasattr(sched, "scheduler") else sched.state_dict(),
        "rng": ca.rng_states(),
        "data": {"epoch": progress.epoch, "pos": progress.pos},
        "counters": {"step": progress.step},
    }
    report = ca.torch_state_report(progress.step, parts, resumed_from,
                                   extra={"framework": f"accelerate {acc_version}"})
    ca.write_state_file(proto.state_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

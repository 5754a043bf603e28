#!/usr/bin/env python3
"""An OpenMMLab mmengine Runner, speaking the crashpoint subject protocol v1.

The checkpoint code is mmengine's own, as OpenMMLab's toolboxes (mmdet, mmseg,
mmpretrain) use it: `Runner(work_dir=CKPT_DIR, train_cfg=dict(by_epoch=False,
max_iters=MAX_STEPS), default_hooks=dict(checkpoint=dict(type="CheckpointHook",
interval=N, by_epoch=False, max_keep_ckpts=K)), resume=True)`. Read in mmengine 0.10.7
(`hooks/checkpoint_hook.py`, `runner/checkpoint.py`, `runner/runner.py`), a save is:
with `max_keep_ckpts` K > 0, the oldest kept `iter_<n>.pth` is removed first; then
`torch.save` straight into `iter_<N>.pth` (no temporary file); then the text file
`<work_dir>/last_checkpoint` is rewritten in place (`open(..., "w")`) with the path of
the new file, as `work_dir` was given (relative to the working directory when it is).
Nothing is fsynced. `resume=True` reads `last_checkpoint` when it is there and resumes
from the path it holds; without it, training starts from scratch.

CPU only, no downloads: the adapter's tiny MLP and synthetic regression data in an
mmengine `BaseModel`; Adam through an `OptimWrapper`; mmengine's `DefaultSampler`
(seeded, shuffled), which an iteration-based resume fast-forwards; dropout. mmengine's
checkpoints hold no RNG state (a resumed run goes on with the RNGs as seeded at its
start), so
with `--rng per-iter` (the default) the example seeds torch's RNG from (seed,
iteration) before every iteration, and a resume is exact; `--rng mmengine` leaves the
RNG to mmengine, and a resumed run then ends with another torch RNG state.

Resume: CRASHPOINT_RESUME `last` is `resume=True` (what an OpenMMLab user passes with
`--resume`); any other value is `resume=True, load_from=<that path>`. Exit status: 0
done, 1 resume failed (reason on stderr), 2 usage.
"""

import argparse
import logging
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "adapter"))

import crashpoint_adapter as ca  # noqa: E402

PROG = "mmengine/train.py"

BATCH = 4
SAMPLES = 16


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG, description="An mmengine Runner checkpointing every N iterations (protocol v1).")
    ap.add_argument("--interval", type=int, default=1, metavar="N",
                    help="CheckpointHook(interval=N, by_epoch=False) (default: 1)")
    ap.add_argument("--keep", type=int, default=-1, metavar="K",
                    help="CheckpointHook(max_keep_ckpts=K); -1 keeps all (default: -1)")
    ap.add_argument("--rng", choices=("per-iter", "mmengine"), default="per-iter",
                    help="seed torch's RNG before every iteration (default), or leave it to "
                         "mmengine, which seeds it once at the start of every run")
    args = ap.parse_args(argv)
    if args.interval < 1 or args.keep == 0:
        ap.error("--interval must be at least 1, --keep -1 or at least 1")
    return args


def main(argv):
    args = parse_args(argv)
    proto = ca.protocol_or_exit(PROG)

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    import mmengine
    import torch
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from torch import nn
    from torch.utils.data import Dataset

    torch.set_num_threads(1)

    x, y, net = ca.tiny_regression(proto.seed, samples=SAMPLES)

    class Pairs(Dataset):
        def __len__(self):
            return SAMPLES

        def __getitem__(self, i):
            return {"x": x[i], "y": y[i]}

    class Regression(BaseModel):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, y, mode="tensor"):
            out = self.net(x)
            if mode == "loss":
                return {"loss": nn.functional.mse_loss(out, y)}
            return out

    pointer = os.path.join(proto.ckpt_dir, "last_checkpoint")

    def named_now():
        try:
            with open(pointer) as f:
                return f.read().strip()
        except OSError:
            return None

    class Announce(Hook):
        """Announces each checkpoint `last_checkpoint` comes to name, after
        mmengine's CheckpointHook (priority VERY_LOW) has run."""

        priority = "LOWEST"

        def __init__(self):
            self.seen = named_now()
            self.start = None

        def before_train(self, runner):
            # After load_or_resume: the iteration this run starts from.
            self.start = runner.iter

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            # per-iter: the RNG of iteration i is a function of (seed, i) alone,
            # so a run resumed at any iteration has the uninterrupted run's RNG.
            if args.rng == "per-iter":
                torch.manual_seed(ca.derive_seed(proto.seed, f"iter-{runner.iter}"))

        def after_train(self, runner):
            # ... and after the last one, so a run resumed there (it trains no
            # iteration) ends with the RNG the uninterrupted run ends with.
            if args.rng == "per-iter":
                torch.manual_seed(ca.derive_seed(proto.seed, f"iter-{runner.iter}"))

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            named = named_now()
            if named and named != self.seen:
                self.seen = named
                step = int(os.path.basename(named).split("_")[1].split(".")[0])
                ca.append_saved_event(proto.events, step, named)
                ca.maybe_kill_after_save(step)

    model = Regression(net)
    announce = Announce()
    resume = proto.resume
    try:
        runner = Runner(
            model=model,
            work_dir=proto.ckpt_dir,
            train_dataloader=dict(
                dataset=Pairs(), batch_size=BATCH, num_workers=0,
                sampler=dict(type="DefaultSampler", shuffle=True,
                             seed=ca.derive_seed(proto.seed, "sampler", bits=31)),
                collate_fn=dict(type="default_collate")),
            optim_wrapper=dict(optimizer=torch.optim.Adam(model.parameters(), lr=0.01)),
            train_cfg=dict(by_epoch=False, max_iters=proto.max_steps, val_interval=10**9),
            default_hooks=dict(
                checkpoint=dict(type="CheckpointHook", interval=args.interval,
                                by_epoch=False, max_keep_ckpts=args.keep),
                logger=dict(type="LoggerHook", interval=10**9)),
            custom_hooks=[announce],
            randomness=dict(seed=ca.derive_seed(proto.seed, "mmengine", bits=31),
                            deterministic=True),
            resume=resume is not None,
            load_from=None if resume in (None, "last") else resume,
            default_scope=None,
        )
        runner.train()
    except Exception as e:                      # noqa: BLE001 - the reason goes to stderr
        ca.log(PROG, f"error: {type(e).__name__}: {e}")
        return 1

    step = runner.iter
    parts = {
        "params": model.state_dict(),
        "optimizer": runner.optim_wrapper.optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "counters": {"step": step},
    }
    resumed_from = announce.start or None
    report = ca.torch_state_report(step, parts, resumed_from,
                                   extra={"framework": f"mmengine {mmengine.__version__}, "
                                                       f"torch {torch.__version__}"})
    ca.write_state_file(proto.state_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

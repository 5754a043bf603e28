#!/usr/bin/env python3
"""A Composer (MosaicML) Trainer run, speaking the crashpoint subject protocol v1.

The checkpoint code is Composer's own: `Trainer(save_folder=CKPT_DIR,
save_interval="<N>ba", save_overwrite=..., autoresume=...)`. Read in composer 0.32.1
(`callbacks/checkpoint_saver.py`, `utils/checkpoint.py`, `trainer/trainer.py`), a save
is: `torch.save` straight into `ep<epoch>-ba<batch>-rank0.pt` (no temporary file), then
`os.remove("latest-rank0.pt")` and `os.symlink(<relative path>, "latest-rank0.pt")`,
then, with `save_num_checkpoints_to_keep` K >= 0, `os.remove` of the oldest beyond K.
Nothing is fsynced. `autoresume=True` loads what `latest-rank0.pt` resolves to, and
starts from scratch when that link is not there. Unless `save_overwrite`, `fit` first
refuses a save folder holding a checkpoint named for a later batch than the one it
starts from (`ensure_folder_has_no_conflicting_files`).

CPU only, no downloads: the adapter's tiny MLP and synthetic regression data, wrapped in
a `ComposerModel`; Adam; a DataLoader whose shuffling sampler is Composer's
(`dist.get_sampler`, seeded); dropout (torch RNG, which Composer saves and restores).

Resume: CRASHPOINT_RESUME `last` is `autoresume=True` (what a Composer user sets; needs
a fixed `run_name`); any other value is `load_path`, relative to the working
directory. Exit status: 0 done, 1 resume failed (reason on stderr), 2 usage.
"""

import argparse
import logging
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "adapter"))

import crashpoint_adapter as ca  # noqa: E402

PROG = "composer/train.py"

BATCH = 4
SAMPLES = 16
LATEST = "latest-rank0.pt"


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG, description="A Composer Trainer checkpointing every N batches (protocol v1).")
    ap.add_argument("--save-every", type=int, default=1, metavar="N",
                    help="save_interval='<N>ba' (default: 1)")
    ap.add_argument("--keep", type=int, default=-1, metavar="K",
                    help="save_num_checkpoints_to_keep; -1 keeps all (default: -1)")
    ap.add_argument("--overwrite", action="store_true",
                    help="save_overwrite=True: fit does not refuse later-named checkpoints")
    args = ap.parse_args(argv)
    if args.save_every < 1:
        ap.error("--save-every must be at least 1")
    return args


def main(argv):
    args = parse_args(argv)
    proto = ca.protocol_or_exit(PROG)

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("COMPOSER_DISABLE_TELEMETRY", "1")

    import composer
    import torch
    from composer import Callback, Event, Trainer
    from composer.models import ComposerModel
    from composer.utils import dist
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    x, y, net = ca.tiny_regression(proto.seed, samples=SAMPLES)

    class Regression(ComposerModel):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, batch):
            return self.net(batch[0])

        def loss(self, outputs, batch, *args, **kwargs):
            return nn.functional.mse_loss(outputs, batch[1])

    model = Regression(net)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    ds = TensorDataset(x, y)
    sampler = dist.get_sampler(ds, shuffle=True, drop_last=True,
                               seed=ca.derive_seed(proto.seed, "sampler", bits=31))
    loader = DataLoader(ds, batch_size=BATCH, sampler=sampler, drop_last=True)

    class Announce(Callback):
        """Announces each checkpoint `latest-rank0.pt` comes to name. Composer adds
        its saver after the user's callbacks, so a save made at one event is seen
        at the next one (the next batch's start, the epoch's end, the fit's end)."""

        def __init__(self):
            self.seen = None

        def run_event(self, event, state, logger):
            link = os.path.join(proto.ckpt_dir, LATEST)
            try:
                target = os.readlink(link)
            except OSError:
                return
            if target == self.seen:
                return
            self.seen = target
            batch = int(target.split("-ba")[1].split("-")[0])
            ca.append_saved_event(proto.events, batch, os.path.join(proto.ckpt_dir, target))
            ca.maybe_kill_after_save(batch)

    resume = proto.resume
    announce = Announce()
    # What the link names now was saved by an earlier run.
    try:
        announce.seen = os.readlink(os.path.join(proto.ckpt_dir, LATEST))
    except OSError:
        pass
    load_path = None if resume in (None, "last") else resume
    try:
        trainer = Trainer(
            model=model,
            train_dataloader=loader,
            optimizers=opt,
            max_duration=f"{proto.max_steps}ba",
            device="cpu",
            seed=ca.derive_seed(proto.seed, "composer", bits=31),
            run_name="crashpoint",
            save_folder=proto.ckpt_dir,
            save_interval=f"{args.save_every}ba",
            save_overwrite=args.overwrite,
            save_num_checkpoints_to_keep=args.keep,
            autoresume=resume == "last",
            load_path=load_path,
            callbacks=[announce],
            progress_bar=False,
            log_to_console=False,
            loggers=[],
        )
    except Exception as e:                      # noqa: BLE001 - the reason goes to stderr
        ca.log(PROG, f"error: cannot start from {resume or 'scratch'}: {type(e).__name__}: {e}")
        return 1
    start = int(trainer.state.timestamp.batch)
    resumed_from = start if resume is not None and start > 0 else None
    if resume is not None:
        ca.log(PROG, f"resumed at batch {start}" if start else "started from scratch")
    try:
        trainer.fit()
    except Exception as e:                      # noqa: BLE001
        ca.log(PROG, f"error: fit failed: {type(e).__name__}: {e}")
        return 1

    step = int(trainer.state.timestamp.batch)
    parts = {
        "params": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "data": {"epoch": int(trainer.state.timestamp.epoch),
                 "batch_in_epoch": int(trainer.state.timestamp.batch_in_epoch)},
        "counters": {"step": step},
    }
    report = ca.torch_state_report(step, parts, resumed_from,
                                   extra={"framework": f"composer {composer.__version__}, "
                                                       f"torch {torch.__version__}"})
    ca.write_state_file(proto.state_out, report)
    trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

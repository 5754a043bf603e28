#!/usr/bin/env python3
"""A small, deterministic PyTorch Lightning trainer that speaks the crashpoint subject protocol v1.

CPU only, no downloads: a tiny MLP built in code, synthetic regression data made
from CRASHPOINT_SEED, Adam, a warm-up-then-decay LambdaLR stepped every
optimizer step, dropout (torch RNG) and input noise drawn from numpy's and
python's global RNGs. Checkpoints are written by Lightning's own ModelCheckpoint;
resumes go through `trainer.fit(ckpt_path=CRASHPOINT_RESUME)` with the value
passed as-is (a path, or the keywords `last` / `best`).

Lightning saves neither the global RNG states nor the position inside an epoch,
so this module adds both to every checkpoint (`on_save_checkpoint`) the way a
careful user does; `--no-rng-state` and `--data-state none` switch that off
(negative controls). See README.md next to this file and docs/frameworks.md.
"""

import argparse
import os
import random
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "adapter"))

import crashpoint_adapter as ca  # noqa: E402

PROG = "lightning/train.py"

# The model and data (fixed: part of the program).
N_SAMPLES = 64
BATCH = 4                 # 16 optimizer steps per epoch
IN_DIM, HIDDEN = 16, 32
DROPOUT = 0.1
BASE_LR = 0.01
WARMUP = 4
GAMMA = 0.95


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Deterministic PyTorch Lightning trainer for crashpoint (protocol v1).",
        epilog=(
            "environment (protocol v1): CRASHPOINT_CKPT_DIR, CRASHPOINT_MAX_STEPS (20),\n"
            "CRASHPOINT_SEED (0), CRASHPOINT_RESUME (absent: fresh; else passed to\n"
            "trainer.fit(ckpt_path=...) as-is), CRASHPOINT_STATE_OUT, CRASHPOINT_EVENTS.\n"
            "Options may also be given as CRASHPOINT_LIGHTNING_ARGS (split on spaces),\n"
            "read before the command line.\n"
            "exit status: 0 done, 1 training or resuming failed (reason on stderr), 2 usage"))
    ap.add_argument("--root", choices=("dirpath", "default_root_dir"), default="dirpath",
                    help="where checkpoints go: dirpath = ModelCheckpoint(dirpath=CKPT_DIR) "
                         "(Lightning makes it realpath(CKPT_DIR)); default_root_dir = "
                         "Trainer(default_root_dir=CKPT_DIR) and no dirpath, so Lightning puts them "
                         "under CKPT_DIR/checkpoints (with --logger none) or "
                         "CKPT_DIR/lightning_logs/version_N/checkpoints (with --logger csv) "
                         "(default: dirpath)")
    ap.add_argument("--logger", choices=("none", "csv"), default="none",
                    help="none: Trainer(logger=False); csv: a CSVLogger under CKPT_DIR "
                         "(default: none)")
    ap.add_argument("--save-last", choices=("link", "true", "copy", "off"), default="link",
                    help="link: save_last='link' (2.2+; on 2.1.x save_last=True, which links); "
                         "true: save_last=True as the version interprets it (2.1.x: a symlink, "
                         "2.2+: a full copy); copy: a full copy (2.2+: True; 2.1.x cannot copy while "
                         "top-k saves, refused); off: no last checkpoint (default: link)")
    ap.add_argument("--every-n-train-steps", type=int, default=5, metavar="N",
                    help="ModelCheckpoint(every_n_train_steps=N) (default: 5)")
    ap.add_argument("--save-top-k", type=int, default=1, metavar="K",
                    help="ModelCheckpoint(save_top_k=K); without --monitor only -1, 0, 1 "
                         "(default: 1)")
    ap.add_argument("--monitor", choices=("none", "train_loss"), default="none",
                    help="rank checkpoints by the logged train_loss (mode min) (default: none)")
    ap.add_argument("--filename", default=None, metavar="TEMPLATE",
                    help="ModelCheckpoint(filename=...) (default: Lightning's '{epoch}-{step}')")
    ap.add_argument("--no-version-counter", action="store_true",
                    help="ModelCheckpoint(enable_version_counter=False)")
    ap.add_argument("--data-state", choices=("module", "loader", "none"), default="module",
                    help="how the position inside an epoch survives a resume: module = the "
                         "LightningModule stores the sampler's epoch and position in the "
                         "checkpoint (every version); loader = the DataLoader has "
                         "state_dict/load_state_dict and Lightning saves it (2.3+ only; 2.1.x "
                         "ignores it); none = not saved, a mid-epoch resume restarts the epoch "
                         "(negative control) (default: module)")
    ap.add_argument("--no-rng-state", action="store_true",
                    help="do not store the global RNG states in the checkpoint (negative control: "
                         "Lightning itself does not save them)")
    ap.add_argument("--digest-loops", action="store_true",
                    help="also hash trainer.current_epoch and Lightning's loop progress "
                         "counters (fit_loop.state_dict()) into the counters part; they do not "
                         "survive a resume exactly in any version measured, see docs/frameworks.md")
    extra = os.environ.get("CRASHPOINT_LIGHTNING_ARGS", "").split()
    args = ap.parse_args(extra + list(argv))
    if args.every_n_train_steps < 1:
        ap.error("--every-n-train-steps must be at least 1")
    if args.save_top_k < -1:
        ap.error("--save-top-k must be -1 or more")
    if args.monitor == "none" and args.save_top_k not in (-1, 0, 1):
        ap.error("without --monitor, --save-top-k must be -1, 0 or 1 (as Lightning requires)")
    return args


def main(argv):
    args = parse_args(argv)
    try:
        proto = ca.Protocol.from_env()
        ca.kill_after_save_step()
    except ca.ProtocolError as e:
        ca.log(PROG, f"error: {e}")
        return 2

    os.environ.setdefault("PL_DISABLE_FORK", "1")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")

    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset, Sampler
    try:
        import lightning.pytorch as pl
        from lightning.pytorch.callbacks import ModelCheckpoint
    except ImportError:
        import pytorch_lightning as pl
        from pytorch_lightning.callbacks import ModelCheckpoint

    pl_version = tuple(int(x) for x in pl.__version__.split(".")[:2])
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    # -- data -------------------------------------------------------------

    class Synthetic(Dataset):
        def __init__(self, seed):
            g = torch.Generator().manual_seed(ca.derive_seed(seed, "dataset"))
            self.x = torch.randn(N_SAMPLES, IN_DIM, generator=g)
            w = torch.randn(IN_DIM, 1, generator=g)
            self.y = self.x @ w + 0.1 * torch.randn(N_SAMPLES, 1, generator=g)

        def __len__(self):
            return N_SAMPLES

        def __getitem__(self, i):
            return i, self.x[i], self.y[i]

    class ResumableSampler(Sampler):
        """A fresh permutation per epoch, from (seed, epoch) alone (no global RNG);
        `pos` counts the indices handed out in the current epoch, so a resume can
        continue mid-epoch. len() is always the whole epoch, as Lightning expects."""

        def __init__(self, seed):
            self.seed, self.epoch, self.pos = seed, 0, 0

        def set_epoch(self, epoch):          # Lightning calls this at every epoch start
            if epoch != self.epoch:
                self.epoch, self.pos = epoch, 0

        def perm(self):
            g = torch.Generator().manual_seed(ca.derive_seed(self.seed, f"epoch-{self.epoch}"))
            return torch.randperm(N_SAMPLES, generator=g).tolist()

        def __iter__(self):
            perm = self.perm()
            while self.pos < N_SAMPLES:
                i = perm[self.pos]
                self.pos += 1
                yield i

        def __len__(self):
            return N_SAMPLES

        def state_dict(self):
            return {"epoch": self.epoch, "pos": self.pos}

        def load_state_dict(self, st):
            self.epoch, self.pos = int(st["epoch"]), int(st["pos"])

    class StatefulLoader(DataLoader):
        """--data-state loader: Lightning 2.3+ saves state_dict() of a stateful
        train DataLoader in the checkpoint's loops and restores it."""

        def state_dict(self):
            return self.sampler.state_dict()

        def load_state_dict(self, st):
            self.sampler.load_state_dict(st)

    # -- model ------------------------------------------------------------

    class Module(pl.LightningModule):
        def __init__(self, seed):
            super().__init__()
            self.seed = seed
            self.net = nn.Sequential(nn.Linear(IN_DIM, HIDDEN), nn.GELU(), nn.Dropout(DROPOUT),
                                     nn.Linear(HIDDEN, 1))
            self.data = Synthetic(seed)
            self.sampler = ResumableSampler(seed)
            self.resumed_from_step = None
            self._pending_rng = None

        def train_dataloader(self):
            cls = StatefulLoader if args.data_state == "loader" else DataLoader
            # A generator of its own: a DataLoader without one draws its workers'
            # base seed from torch's global RNG every time an iterator is made, and
            # a mid-epoch resume makes one more iterator than the uninterrupted run.
            return cls(self.data, batch_size=BATCH, sampler=self.sampler, drop_last=True,
                       num_workers=0,
                       generator=torch.Generator().manual_seed(ca.derive_seed(self.seed, "loader")))

        def training_step(self, batch, batch_idx):
            _, x, y = batch
            noise = torch.from_numpy(np.random.standard_normal(x.shape).astype(np.float32))
            x = x + 0.01 * noise                          # numpy global RNG
            x[:, random.randrange(IN_DIM)] = 0.0           # python global RNG
            loss = nn.functional.mse_loss(self.net(x), y)  # dropout: torch global RNG
            self.log("train_loss", loss, on_step=True, prog_bar=False, logger=args.logger != "none")
            return loss

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=BASE_LR)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: (s + 1) / WARMUP if s < WARMUP else GAMMA ** (s - WARMUP + 1))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        def on_save_checkpoint(self, checkpoint):
            extra = {}
            if not args.no_rng_state:
                extra["rng"] = ca.rng_states()
            if args.data_state == "module":
                extra["data"] = self.sampler.state_dict()
            checkpoint["crashpoint_example"] = extra

        def on_load_checkpoint(self, checkpoint):
            self.resumed_from_step = int(checkpoint["global_step"])
            extra = checkpoint.get("crashpoint_example", {})
            if "data" in extra:
                self.sampler.load_state_dict(extra["data"])
            self._pending_rng = extra.get("rng")

        def on_train_start(self):
            # Applied as late as possible: nothing between here and the first
            # training step draws from the global RNGs.
            if self._pending_rng is not None:
                ca.set_rng_states(self._pending_rng)
                self._pending_rng = None

    # -- checkpointing with saved events -----------------------------------

    class AnnouncingCheckpoint(ModelCheckpoint):
        """Lightning's ModelCheckpoint, unchanged, plus one `saved <step> <path>`
        event after each hook that saved: once top-k and last are both done."""

        def _save_checkpoint(self, trainer, filepath):
            super()._save_checkpoint(trainer, filepath)
            self._cp_saved.append(str(filepath))

        def _announce(self, trainer):
            saved, self._cp_saved = self._cp_saved, []
            if not saved:
                return
            last_names = (self.CHECKPOINT_NAME_LAST,)
            topk = [p for p in saved if not os.path.basename(p).startswith(last_names)]
            ca.append_saved_event(proto.events, trainer.global_step, (topk or saved)[0])
            ca.maybe_kill_after_save(trainer.global_step)

        def on_train_batch_end(self, trainer, *a, **k):
            super().on_train_batch_end(trainer, *a, **k)
            self._announce(trainer)

        def on_train_epoch_end(self, trainer, *a, **k):
            super().on_train_epoch_end(trainer, *a, **k)
            self._announce(trainer)

        def on_validation_end(self, trainer, *a, **k):
            super().on_validation_end(trainer, *a, **k)
            self._announce(trainer)

        def on_train_end(self, trainer, *a, **k):
            parent = getattr(super(), "on_train_end", None)
            if parent is not None:
                parent(trainer, *a, **k)
            self._announce(trainer)

    if args.save_last == "off":
        save_last = False
    elif args.save_last == "link":
        save_last = "link" if pl_version >= (2, 2) else True
    elif args.save_last == "true":
        save_last = True
    else:                                   # copy
        if pl_version < (2, 2) and args.save_top_k != 0:
            ca.log(PROG, "error: Lightning < 2.2 links last.ckpt whenever top-k saves; "
                         "--save-last copy needs --save-top-k 0 there")
            return 2
        save_last = True

    ckpt_kwargs = dict(
        every_n_train_steps=args.every_n_train_steps,
        save_top_k=args.save_top_k,
        save_last=save_last,
        monitor=None if args.monitor == "none" else args.monitor,
        mode="min",
        filename=args.filename,
    )
    if args.no_version_counter:
        ckpt_kwargs["enable_version_counter"] = False
    if args.root == "dirpath":
        ckpt_kwargs["dirpath"] = proto.ckpt_dir
    callback = AnnouncingCheckpoint(**ckpt_kwargs)
    callback._cp_saved = []

    if args.logger == "csv":
        logger = pl.loggers.CSVLogger(save_dir=proto.ckpt_dir)
    else:
        logger = False

    torch.manual_seed(ca.derive_seed(proto.seed, "init"))
    np.random.seed(ca.derive_seed(proto.seed, "numpy", bits=32))
    random.seed(ca.derive_seed(proto.seed, "python"))
    model = Module(proto.seed)

    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=proto.max_steps, max_epochs=-1,
        default_root_dir=proto.ckpt_dir, logger=logger, callbacks=[callback],
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=1, deterministic=True,
    )
    try:
        trainer.fit(model, ckpt_path=proto.resume)
    except Exception as e:                      # noqa: BLE001 - the reason goes to stderr
        ca.log(PROG, f"error: {type(e).__name__}: {e}")
        return 1
    if model.resumed_from_step is not None:
        ca.log(PROG, f"resumed from step {model.resumed_from_step}")
    if model._pending_rng is not None:
        # Resumed at max_steps: Lightning skips the fit loop, on_train_start never
        # ran, and the loaded RNG states are the final ones.
        ca.set_rng_states(model._pending_rng)
        model._pending_rng = None

    opt = trainer.optimizers[0]
    sched = trainer.lr_scheduler_configs[0].scheduler
    # The epoch and the position inside it are in "data" (the sampler's own
    # counters). trainer.current_epoch is not hashed by default: a run stopped by
    # max_steps mid-epoch counts that epoch as completed, a run resumed at
    # max_steps does not (see docs/frameworks.md), and neither is training state.
    counters = {"global_step": trainer.global_step}
    if args.digest_loops:
        counters["current_epoch"] = trainer.current_epoch
        counters["loops"] = trainer.fit_loop.state_dict()
    parts = {
        "params": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": ca.rng_states(),
        "data": model.sampler.state_dict(),
        "counters": counters,
    }
    report = ca.torch_state_report(trainer.global_step, parts, model.resumed_from_step,
                                   extra={"framework": f"pytorch-lightning {pl.__version__}"})
    ca.write_state_file(proto.state_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""A Keras 3 model.fit run made fault tolerant by keras.callbacks.BackupAndRestore, speaking the crashpoint subject protocol v1.

The backup is Keras's own: `BackupAndRestore(backup_dir=CRASHPOINT_CKPT_DIR)`, saving at
the end of every epoch. Read in keras 3.15's `callbacks/backup_and_restore.py`, a save
is `model.save_weights("latest.weights.h5", overwrite=True)` (h5py, in place; the file
holds the model's and the optimizer's variables), then `training_metadata.json`
(`{"epoch": ..., "batch": ...}`) rewritten in place; with `--double-checkpoint` both are
first copied to `*.bkp`, which a failed load falls back to. `on_train_begin` loads the
weights when the file is there and starts at the epoch the metadata names; at the end of
`fit` the whole backup directory is removed (`delete_checkpoint=True`, the default;
`--keep-backup` keeps it). Nothing is fsynced.

The torch backend, CPU only, no downloads: a small dense network built in code,
synthetic regression data from CRASHPOINT_SEED, AdamW, `shuffle=False` (Keras draws a
shuffled order from an RNG it does not back up), `--epoch-steps N` batches of 4 an
epoch (default 2). CRASHPOINT_MAX_STEPS must be a multiple of it. Resume: Keras resumes
on its own from the backup directory; CRASHPOINT_RESUME must be `last` (anything else
is refused: BackupAndRestore takes no path). Exit status: 0 done, 1 resume failed or
refused (reason on stderr), 2 usage.
"""

import argparse
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "adapter"))

import crashpoint_adapter as ca  # noqa: E402

PROG = "keras/train.py"

BATCH = 4
IN_DIM = 16


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG, description="Keras BackupAndRestore under crashpoint (protocol v1).")
    ap.add_argument("--epoch-steps", type=int, default=2, metavar="N",
                    help="batches in an epoch; a backup after each epoch (default: 2)")
    ap.add_argument("--double-checkpoint", action="store_true",
                    help="BackupAndRestore(double_checkpoint=True): keep *.bkp copies")
    ap.add_argument("--keep-backup", action="store_true",
                    help="BackupAndRestore(delete_checkpoint=False): keep the backup at the end")
    args = ap.parse_args(argv)
    if args.epoch_steps < 1:
        ap.error("--epoch-steps must be at least 1")
    return args


def main(argv):
    args = parse_args(argv)
    proto = ca.protocol_or_exit(PROG)
    if proto.max_steps % args.epoch_steps:
        ca.log(PROG, f"error: CRASHPOINT_MAX_STEPS={proto.max_steps} is not a multiple of "
                     f"--epoch-steps {args.epoch_steps}")
        return 2
    if proto.resume not in (None, "last"):
        ca.log(PROG, f"error: cannot resume from {proto.resume}: BackupAndRestore resumes "
                     f"only from its backup directory (CRASHPOINT_RESUME=last)")
        return 1

    os.environ.setdefault("KERAS_BACKEND", "torch")
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    import keras

    epochs = proto.max_steps // args.epoch_steps
    samples = BATCH * args.epoch_steps
    rng = np.random.default_rng(ca.derive_seed(proto.seed, "dataset"))
    x = rng.standard_normal((samples, IN_DIM)).astype("float32")
    y = (x @ rng.standard_normal((IN_DIM, 1)) + 0.1 * rng.standard_normal((samples, 1))
         ).astype("float32")
    keras.utils.set_random_seed(ca.derive_seed(proto.seed, "init") % (1 << 31))
    model = keras.Sequential([keras.Input((IN_DIM,)), keras.layers.Dense(32, activation="gelu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=0.01), loss="mse")

    class Protocol(keras.callbacks.Callback):
        """After BackupAndRestore: notes where fit starts, announces each backup."""

        def __init__(self):
            super().__init__()
            self.start_epoch = 0
            self.epoch = 0

        def on_train_begin(self, logs=None):
            self.start_epoch = self.epoch = self.model._initial_epoch or 0

        def on_epoch_end(self, epoch, logs=None):
            self.epoch = epoch + 1
            step = self.epoch * args.epoch_steps
            ca.append_saved_event(proto.events, step,
                                  os.path.join(proto.ckpt_dir, "latest.weights.h5"))
            ca.maybe_kill_after_save(step)

    backup = keras.callbacks.BackupAndRestore(
        backup_dir=proto.ckpt_dir, save_freq="epoch",
        double_checkpoint=args.double_checkpoint, delete_checkpoint=not args.keep_backup)
    progress = Protocol()
    try:
        model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
                  callbacks=[backup, progress])
    except Exception as e:                      # noqa: BLE001 - the reason goes to stderr
        ca.log(PROG, f"error: fit failed: {type(e).__name__}: {e}")
        return 1
    resumed_from = progress.start_epoch * args.epoch_steps if progress.start_epoch else None
    if resumed_from is not None:
        ca.log(PROG, f"resumed at epoch {progress.start_epoch} (step {resumed_from})")

    step = int(model.optimizer.iterations.numpy())
    parts = {
        "params": [np.asarray(v.numpy()) for v in model.weights],
        "optimizer": [np.asarray(v.numpy()) for v in model.optimizer.variables],
        "data": {"epoch": progress.epoch},
        "counters": {"step": step},
    }
    report = ca.torch_state_report(step, parts, resumed_from,
                                   extra={"framework": f"keras {keras.__version__} "
                                                       f"(torch {torch.__version__})"})
    ca.write_state_file(proto.state_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

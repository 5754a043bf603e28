#!/usr/bin/env python3
"""A small, deterministic Hugging Face `Trainer` run that speaks the crashpoint subject protocol v1.

CPU only, no downloads, no hub: a tiny GPT-2 (`GPT2LMHeadModel` built from a
`GPT2Config` in code, 2 layers, 32 wide, dropout on), synthetic token sequences
made from CRASHPOINT_SEED, AdamW and a warm-up scheduler as the Trainer makes
them. The Trainer writes its own `checkpoint-<step>/` directories into
`output_dir = CRASHPOINT_CKPT_DIR`, rotates them (`save_total_limit`) and resumes
with `trainer.train(resume_from_checkpoint=...)`: the CRASHPOINT_RESUME path as
given, or `True` for the keyword `last` (the Trainer then picks
`get_last_checkpoint(output_dir)`, the highest-numbered `checkpoint-N`).

The Trainer itself saves the RNG states (python, numpy, torch) and skips the
batches already trained in the current epoch, so nothing is added to its
checkpoints here. See README.md next to this file and docs/frameworks.md.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "adapter"))

import crashpoint_adapter as ca  # noqa: E402

PROG = "hf-trainer/train.py"

N_SAMPLES = 64
SEQ_LEN = 16
BATCH = 4                 # 16 optimizer steps per epoch
VOCAB = 64


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Deterministic Hugging Face Trainer run for crashpoint (protocol v1).",
        epilog=(
            "environment (protocol v1): CRASHPOINT_CKPT_DIR (the Trainer's output_dir),\n"
            "CRASHPOINT_MAX_STEPS (20), CRASHPOINT_SEED (0), CRASHPOINT_RESUME (absent: fresh;\n"
            "'last': resume_from_checkpoint=True; anything else: passed as the path),\n"
            "CRASHPOINT_STATE_OUT, CRASHPOINT_EVENTS. Options may also be given as\n"
            "CRASHPOINT_HF_ARGS (split on spaces), read before the command line.\n"
            "exit status: 0 done, 1 training or resuming failed (reason on stderr), 2 usage"))
    ap.add_argument("--save-steps", type=int, default=5, metavar="N",
                    help="TrainingArguments(save_strategy='steps', save_steps=N) (default: 5)")
    ap.add_argument("--save-total-limit", type=int, default=2, metavar="K",
                    help="TrainingArguments(save_total_limit=K); 0: keep all (default: 2)")
    ap.add_argument("--scheduler", default="cosine",
                    help="TrainingArguments(lr_scheduler_type=...), e.g. linear, cosine, constant "
                         "(default: cosine, with warmup_steps=4)")
    ap.add_argument("--grad-accum", type=int, default=1, metavar="G",
                    help="gradient_accumulation_steps (default: 1)")
    ap.add_argument("--save-only-model", action="store_true",
                    help="TrainingArguments(save_only_model=True): no optimizer, scheduler or RNG "
                         "state in checkpoints (negative control: resumes cannot be exact)")
    ap.add_argument("--ignore-data-skip", action="store_true",
                    help="TrainingArguments(ignore_data_skip=True): a resume restarts the epoch "
                         "(negative control)")
    ap.add_argument("--no-safetensors", action="store_true",
                    help="save_safetensors=False where the version still has that option "
                         "(pytorch_model.bin instead of model.safetensors)")
    extra = os.environ.get("CRASHPOINT_HF_ARGS", "").split()
    args = ap.parse_args(extra + list(argv))
    if args.save_steps < 1:
        ap.error("--save-steps must be at least 1")
    if args.save_total_limit < 0:
        ap.error("--save-total-limit must not be negative")
    if args.grad_accum < 1:
        ap.error("--grad-accum must be at least 1")
    return args


def main(argv):
    args = parse_args(argv)
    try:
        proto = ca.Protocol.from_env()
        ca.kill_after_save_step()
    except ca.ProtocolError as e:
        ca.log(PROG, f"error: {e}")
        return 2

    # No network, no hub, no telemetry; quiet.
    for k, v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                 ("HF_DATASETS_OFFLINE", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1"),
                 ("TOKENIZERS_PARALLELISM", "false"), ("WANDB_DISABLED", "true"),
                 ("TRANSFORMERS_VERBOSITY", "warning"), ("ACCELERATE_USE_CPU", "1")):
        os.environ.setdefault(k, v)

    import inspect

    import torch
    import transformers
    from transformers import (GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback,
                              TrainingArguments)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.utils.logging.disable_progress_bar()

    class Synthetic(torch.utils.data.Dataset):
        """Token sequences with a learnable structure (next token = previous + small
        step, mod VOCAB), from the seed alone."""

        def __init__(self, seed):
            g = torch.Generator().manual_seed(ca.derive_seed(seed, "dataset"))
            start = torch.randint(0, VOCAB, (N_SAMPLES, 1), generator=g)
            steps = torch.randint(1, 4, (N_SAMPLES, SEQ_LEN - 1), generator=g)
            self.ids = torch.cat([start, start + steps.cumsum(1)], 1) % VOCAB

        def __len__(self):
            return N_SAMPLES

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "labels": self.ids[i], "idx": torch.tensor(i)}

    class CrashpointTrainer(Trainer):
        """The stock Trainer; compute_loss only notes which samples it trained on."""

        last_batch = None

        def compute_loss(self, model, inputs, *a, **k):
            self.last_batch = inputs.pop("idx").tolist()
            return super().compute_loss(model, inputs, *a, **k)

    class Protocol(TrainerCallback):
        """`saved <step> <dir>` once the Trainer has finished a save (on_save runs
        after _save_checkpoint returned, rotation included); the step training
        (re)started from."""

        start_step = None

        def on_train_begin(self, targs, state, control, **kw):
            self.start_step = state.global_step

        def on_save(self, targs, state, control, **kw):
            path = os.path.join(targs.output_dir, f"checkpoint-{state.global_step}")
            ca.append_saved_event(proto.events, state.global_step, path)
            ca.maybe_kill_after_save(state.global_step)

    seed = ca.derive_seed(proto.seed, "hf-seed", bits=31)
    transformers.set_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, n_positions=SEQ_LEN, n_embd=32, n_layer=2, n_head=2,
                        resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1, bos_token_id=0,
                        eos_token_id=0)
    try:
        model = GPT2LMHeadModel(config, attn_implementation="eager")
    except TypeError:
        config._attn_implementation = "eager"
        model = GPT2LMHeadModel(config)

    targ_kwargs = dict(
        output_dir=proto.ckpt_dir,
        max_steps=proto.max_steps,
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=3e-3,
        warmup_steps=4,
        lr_scheduler_type=args.scheduler,
        weight_decay=0.01,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit or None,
        save_only_model=args.save_only_model,
        ignore_data_skip=args.ignore_data_skip,
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        remove_unused_columns=False,        # keep "idx" for compute_loss
        use_cpu=True,
    )
    params = inspect.signature(TrainingArguments.__init__).parameters
    if args.no_safetensors:
        if "save_safetensors" not in params:
            ca.log(PROG, f"error: transformers {transformers.__version__} has no save_safetensors "
                         "option (it always writes safetensors)")
            return 2
        targ_kwargs["save_safetensors"] = False
    if "use_cpu" not in params:                    # older versions: no_cuda
        targ_kwargs.pop("use_cpu")
        targ_kwargs["no_cuda"] = True
    if "report_to" in params and "logging_strategy" not in params:
        targ_kwargs.pop("logging_strategy")
    targs = TrainingArguments(**targ_kwargs)

    callback = Protocol()
    trainer = CrashpointTrainer(model=model, args=targs, train_dataset=Synthetic(proto.seed),
                                callbacks=[callback])

    if proto.resume is None:
        resume = None
    elif proto.resume == "last":
        resume = True
    else:
        resume = proto.resume
    try:
        trainer.train(resume_from_checkpoint=resume)
    except Exception as e:                      # noqa: BLE001 - the reason goes to stderr
        ca.log(PROG, f"error: {type(e).__name__}: {e}")
        return 1
    resumed_from = callback.start_step if resume is not None else None
    if resumed_from is not None:
        ca.log(PROG, f"resumed at step {resumed_from}")

    state = trainer.state
    parts = {
        "params": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.lr_scheduler.state_dict(),
        "rng": ca.rng_states(),
        # The Trainer's data position is its epoch counter (epoch + steps into it /
        # steps per epoch) with the seeded per-epoch order; which samples the
        # last step of this process trained on is logged, not hashed (a run
        # resumed at max_steps trains none).
        "data": {"epoch": float(state.epoch or 0.0)},
        "counters": {"global_step": state.global_step},
    }
    report = ca.torch_state_report(state.global_step, parts, resumed_from,
                                   extra={"framework": f"transformers {transformers.__version__}",
                                          "last_batch": trainer.last_batch})
    ca.write_state_file(proto.state_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

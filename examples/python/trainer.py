#!/usr/bin/env python3
"""A small, deterministic training program that speaks the crashpoint subject protocol v1.

Standard library only (Python >= 3.8). It trains a linear-regression model with
an Adam-style optimizer, a stateful learning-rate scheduler, a shuffled data
loader and dropout-like noise, saves complete checkpoints durably, relinks
`last.ckpt`, and resumes bit for bit. Deliberate, switchable bugs (`--bug`)
reproduce checkpointing failures that real training frameworks shipped.

See README.md next to this file.
"""

import argparse
import hashlib
import json
import math
import os
import random
import re
import sys
import textwrap
import time

PROG = "trainer.py"

# ---------------------------------------------------------------------------
# Model and training hyper-parameters (fixed: they are part of the program).

DIM = 256            # parameters of the linear model
N_SAMPLES = 64       # synthetic data set size
BATCH = 4            # samples per optimizer step: one epoch = 16 steps
DROP_P = 0.1         # dropout-like feature noise
BASE_LR = 0.1
WARMUP = 6           # scheduler: linear warm-up over this many steps ...
GAMMA = 0.99         # ... then the lr is multiplied by GAMMA every step
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8

# ---------------------------------------------------------------------------
# Checkpoint file format:
#   line 1: MAGIC
#   line 2: "blake2b-256 <hex digest of the payload>"
#   rest:   payload, UTF-8 JSON; every float stored exactly with float.hex()

MAGIC = b"crashpoint-example-trainer checkpoint v1\n"
CHECKSUM_ALGO = b"blake2b-256"
FORMAT = 1

LAST = "last.ckpt"
CKPT_RE = re.compile(r"^step=(\d+)\.ckpt$")
TMP_MARK = ".tmp-"   # temporary names: ".<final name>.tmp-<pid>", never end in .ckpt

BUGS = {
    "cwd-relative-link": (
        "last.ckpt is a symlink whose target is the checkpoint path as the user wrote it "
        "(CRASHPOINT_CKPT_DIR joined with the file name), i.e. relative to the working "
        "directory instead of the link's own directory. Dangles whenever the checkpoint "
        "directory is relative. Real origin: PyTorch Lightning 2.1.0-2.1.3, "
        "save_last='link' with a relative dirpath."),
    "absolute-link": (
        "last.ckpt is a symlink with an absolute target. Works until the run directory "
        "is moved or mounted elsewhere."),
    "torn-write": (
        "checkpoints, and last.ckpt as a full copy instead of a link, are written in "
        "place: the final name is opened and truncated directly and filled by several "
        "write() calls, with no temporary file, no rename and no fsync (like a plain "
        "torch.save(path)). A kill mid-write leaves a torn file behind."),
    "unlink-then-link": (
        "last.ckpt is replaced by unlink followed by symlink instead of a symlink under "
        "a temporary name renamed over it: between the two calls there is no last.ckpt, "
        "although a save was announced (a non-atomic link update, as os.remove + "
        "os.symlink)."),
    "delete-before-save": (
        "top-k rotation runs before the new checkpoint is written, counting it as kept: "
        "with --keep 1 (save_top_k=1) the file last.ckpt points to is deleted first, and "
        "a kill before the new save completes leaves a dangling last.ckpt and nothing "
        "to resume from."),
    "no-fsync": (
        "nothing is ever fsynced: neither the checkpoint file nor the directory after "
        "its rename, the relink of last.ckpt or the creation of the checkpoint directory "
        "(like PyTorch Lightning saving through fsspec). Process kills cannot show it; "
        "a power cut loses the saves it announced."),
    "no-rng-state": (
        "the two RNG states are not saved; a resumed run re-seeds them from the seed, "
        "so data order and dropout noise diverge after a resume."),
}

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class Refusal(Exception):
    """A reason not to resume (or not to run); reported on stderr, exit code 1."""


def log(msg):
    sys.stderr.write(f"{PROG}: {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# Deterministic randomness, all derived from the one seed.

def derive_seed(seed, purpose):
    digest = hashlib.sha256(f"{seed}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def fresh_rngs(seed):
    return {
        "data_order": random.Random(derive_seed(seed, "data-order")),
        "dropout": random.Random(derive_seed(seed, "dropout")),
    }


def make_dataset(seed):
    """64 samples of 256 gaussian features; targets from a hidden linear model."""
    gen = random.Random(derive_seed(seed, "dataset"))
    w_true = [gen.gauss(0.0, 1.0) for _ in range(DIM)]
    xs, ys = [], []
    for _ in range(N_SAMPLES):
        x = [gen.gauss(0.0, 1.0) for _ in range(DIM)]
        y = math.fsum(a * b for a, b in zip(w_true, x)) + 0.1 * gen.gauss(0.0, 1.0)
        xs.append(x)
        ys.append(y)
    return xs, ys


def initial_state(seed):
    init = random.Random(derive_seed(seed, "init"))
    rngs = fresh_rngs(seed)
    perm = list(range(N_SAMPLES))
    rngs["data_order"].shuffle(perm)
    return {
        "params": [init.gauss(0.0, 0.02) for _ in range(DIM)],
        "optimizer": {"m": [0.0] * DIM, "v": [0.0] * DIM, "t": 0},
        "scheduler": {"count": 0, "lr": BASE_LR / WARMUP},
        "rng": rngs,
        "data": {"perm": perm, "pos": 0},
        "counters": {"global_step": 0, "epoch": 0},
    }


# ---------------------------------------------------------------------------
# One optimizer step.

def train_step(st, xs, ys):
    data, counters = st["data"], st["counters"]
    rng_order, rng_drop = st["rng"]["data_order"], st["rng"]["dropout"]

    if data["pos"] >= N_SAMPLES:            # epoch boundary: reshuffle
        counters["epoch"] += 1
        perm = list(range(N_SAMPLES))
        rng_order.shuffle(perm)
        data["perm"], data["pos"] = perm, 0
    batch = data["perm"][data["pos"]:data["pos"] + BATCH]
    data["pos"] += BATCH

    params = st["params"]
    grad = [0.0] * DIM
    loss = 0.0
    keep_scale = 1.0 / (1.0 - DROP_P)
    for i in batch:
        xm = [(0.0 if rng_drop.random() < DROP_P else keep_scale) * a for a in xs[i]]
        err = math.fsum(w * a for w, a in zip(params, xm)) - ys[i]
        loss += err * err / len(batch)
        scale = 2.0 * err / len(batch)
        for j in range(DIM):
            grad[j] += scale * xm[j]

    opt, sched = st["optimizer"], st["scheduler"]
    opt["t"] += 1
    t, lr = opt["t"], sched["lr"]
    m, v = opt["m"], opt["v"]
    c1, c2 = 1.0 - BETA1 ** t, 1.0 - BETA2 ** t
    for j in range(DIM):
        g = grad[j]
        m[j] = BETA1 * m[j] + (1.0 - BETA1) * g
        v[j] = BETA2 * v[j] + (1.0 - BETA2) * g * g
        params[j] -= lr * (m[j] / c1) / (math.sqrt(v[j] / c2) + EPS)

    sched["count"] += 1                      # scheduler step: stateful, multiplicative
    if sched["count"] < WARMUP:
        sched["lr"] = BASE_LR * (sched["count"] + 1) / WARMUP
    else:
        sched["lr"] = sched["lr"] * GAMMA

    counters["global_step"] += 1
    return loss


# ---------------------------------------------------------------------------
# Exact, canonical encoding of the state (for checkpoints and for the digest).

def enc_floats(xs):
    return [float(x).hex() for x in xs]


def dec_floats(xs, n):
    if not isinstance(xs, list) or len(xs) != n:
        raise ValueError("float vector of wrong shape")
    return [float.fromhex(x) for x in xs]


def enc_rng(r):
    version, internal, gauss_next = r.getstate()
    return {"version": version, "internal": list(internal),
            "gauss_next": None if gauss_next is None else gauss_next.hex()}


def dec_rng(d):
    gauss_next = None if d["gauss_next"] is None else float.fromhex(d["gauss_next"])
    r = random.Random()
    r.setstate((d["version"], tuple(int(x) for x in d["internal"]), gauss_next))
    return r


def encode_state(st, with_rng=True):
    enc = {
        "params": enc_floats(st["params"]),
        "optimizer": {"m": enc_floats(st["optimizer"]["m"]),
                      "v": enc_floats(st["optimizer"]["v"]),
                      "t": st["optimizer"]["t"]},
        "scheduler": {"count": st["scheduler"]["count"],
                      "lr": st["scheduler"]["lr"].hex()},
        "data": {"perm": list(st["data"]["perm"]), "pos": st["data"]["pos"]},
        "counters": dict(st["counters"]),
    }
    if with_rng:
        enc["rng"] = {name: enc_rng(r) for name, r in sorted(st["rng"].items())}
    return enc


def decode_state(enc, seed, with_rng=True):
    perm = [int(i) for i in enc["data"]["perm"]]
    if sorted(perm) != list(range(N_SAMPLES)):
        raise ValueError("data permutation is not a permutation")
    st = {
        "params": dec_floats(enc["params"], DIM),
        "optimizer": {"m": dec_floats(enc["optimizer"]["m"], DIM),
                      "v": dec_floats(enc["optimizer"]["v"], DIM),
                      "t": int(enc["optimizer"]["t"])},
        "scheduler": {"count": int(enc["scheduler"]["count"]),
                      "lr": float.fromhex(enc["scheduler"]["lr"])},
        "data": {"perm": perm, "pos": int(enc["data"]["pos"])},
        "counters": {"global_step": int(enc["counters"]["global_step"]),
                     "epoch": int(enc["counters"]["epoch"])},
    }
    if with_rng:
        if "rng" not in enc:
            raise ValueError("checkpoint holds no RNG state")
        st["rng"] = {name: dec_rng(enc["rng"][name]) for name in ("data_order", "dropout")}
    else:                                    # bug no-rng-state: re-seed
        st["rng"] = fresh_rngs(seed)
    return st


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def state_report(st, resumed_from):
    enc = encode_state(st)
    fields = {name: hashlib.sha256(canonical(part)).hexdigest()
              for name, part in sorted(enc.items())}
    return {"step": st["counters"]["global_step"],
            "digest": hashlib.sha256(canonical(enc)).hexdigest(),
            "resumed_from_step": resumed_from,
            "fields": fields}


def checkpoint_bytes(st, seed, bugs):
    payload = canonical({
        "format": FORMAT,
        "meta": {"seed": str(seed), "dim": DIM, "samples": N_SAMPLES, "batch": BATCH},
        "state": encode_state(st, with_rng="no-rng-state" not in bugs),
    })
    checksum = hashlib.blake2b(payload, digest_size=32).hexdigest().encode()
    return MAGIC + CHECKSUM_ALGO + b" " + checksum + b"\n" + payload


def parse_checkpoint(blob, seed, bugs):
    if not blob.startswith(MAGIC):
        raise Refusal("not a checkpoint of this trainer (bad magic); the file may be torn or empty")
    rest = blob[len(MAGIC):]
    nl = rest.find(b"\n")
    if nl < 0:
        raise Refusal("corrupt checkpoint: truncated header")
    algo, _, want = rest[:nl].partition(b" ")
    payload = rest[nl + 1:]
    if algo != CHECKSUM_ALGO:
        raise Refusal("corrupt checkpoint: unknown checksum line")
    got = hashlib.blake2b(payload, digest_size=32).hexdigest().encode()
    if got != want:
        raise Refusal("corrupt checkpoint: checksum mismatch (torn or damaged file)")
    try:
        doc = json.loads(payload)
        if doc.get("format") != FORMAT:
            raise ValueError(f"unsupported format {doc.get('format')!r}")
        if doc["meta"]["seed"] != str(seed):
            log(f"warning: checkpoint was made with seed {doc['meta']['seed']}, "
                f"this run has seed {seed}")
        return decode_state(doc["state"], seed, with_rng="no-rng-state" not in bugs)
    except Refusal:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise Refusal(f"incompatible checkpoint: {e}")


# ---------------------------------------------------------------------------
# File system operations: few, explicit system calls.

FSYNC = [True]   # cleared by the no-fsync bug


def fsync(fd):
    if FSYNC[0]:
        os.fsync(fd)


def fsync_dir(path):
    if not FSYNC[0]:
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def ensure_dir(path):
    """Create the checkpoint directory (and parents) durably, only when missing."""
    path = path.rstrip(os.sep) or os.sep
    if os.path.isdir(path):                  # also true for a symlink to a directory
        return
    created, p = [], path
    while p and not os.path.lexists(p):
        created.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    try:
        os.makedirs(path)
    except OSError as e:
        raise Refusal(f"cannot create checkpoint directory {path!r}: {e.strerror or e}")
    for d in reversed(created):              # make each new entry durable in its parent
        fsync_dir(os.path.dirname(d) or os.curdir)


def tmp_name(final_name):
    return f".{final_name}{TMP_MARK}{os.getpid()}"


def clean_stale_temporaries(ckpt_dir):
    """Temporary files of a killed run are never resumed from; drop them."""
    for name in sorted(os.listdir(ckpt_dir)):
        if name.startswith(".") and TMP_MARK in name:
            try:
                os.unlink(os.path.join(ckpt_dir, name))
            except FileNotFoundError:
                pass


def write_file_atomic(ckpt_dir, name, data):
    """temp file, write, fsync, rename over the final name, fsync the directory."""
    tmp = os.path.join(ckpt_dir, tmp_name(name))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileExistsError:                  # a stale temporary with our pid
        os.unlink(tmp)
        fd = os.open(tmp, flags, 0o644)
    try:
        write_all(fd, data)
        fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(ckpt_dir, name))
    fsync_dir(ckpt_dir)


def relink_last(ckpt_dir, name, bugs):
    """last.ckpt -> name, replaced atomically: symlink under a temp name, rename, fsync dir."""
    if "cwd-relative-link" in bugs:
        target = os.path.join(ckpt_dir, name)                     # relative to the cwd
    elif "absolute-link" in bugs:
        target = os.path.abspath(os.path.join(ckpt_dir, name))    # absolute
    else:
        target = name                        # relative to the link's own directory
    if "unlink-then-link" in bugs:
        last = os.path.join(ckpt_dir, LAST)
        if os.path.lexists(last):
            os.unlink(last)
        os.symlink(target, last)             # the window: no last.ckpt until here
        fsync_dir(ckpt_dir)
        return
    tmp = os.path.join(ckpt_dir, tmp_name(LAST))
    try:
        os.symlink(target, tmp)
    except FileExistsError:
        os.unlink(tmp)
        os.symlink(target, tmp)
    os.rename(tmp, os.path.join(ckpt_dir, LAST))
    fsync_dir(ckpt_dir)


def write_file_in_place(path, data, chunks=4):
    """Bug torn-write: open the final name, truncate, write in pieces. Not atomic."""
    if os.path.islink(path):                 # never write through an old link
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        size = -(-len(data) // chunks)
        for k in range(chunks):
            write_all(fd, data[k * size:(k + 1) * size])
    finally:
        os.close(fd)


def append_event(events_path, line):
    fd = os.open(events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        write_all(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def prune(ckpt_dir, step, keep):
    """Keep the checkpoint just saved and the newest keep-1 older ones."""
    older = []
    for name in os.listdir(ckpt_dir):
        m = CKPT_RE.match(name)
        if m and int(m.group(1)) < step:
            older.append((int(m.group(1)), name))
    older.sort(reverse=True)
    doomed = older[max(keep - 1, 0):]
    for _, name in doomed:
        os.unlink(os.path.join(ckpt_dir, name))
    if doomed:
        fsync_dir(ckpt_dir)


def save_checkpoint(cfg, st):
    step = st["counters"]["global_step"]
    name = f"step={step}.ckpt"
    data = checkpoint_bytes(st, cfg.seed, cfg.bugs)
    if "delete-before-save" in cfg.bugs:
        prune(cfg.ckpt_dir, step, cfg.keep)            # too early: before the save
    if "torn-write" in cfg.bugs:
        write_file_in_place(os.path.join(cfg.ckpt_dir, name), data)
        write_file_in_place(os.path.join(cfg.ckpt_dir, LAST), data)
    else:
        write_file_atomic(cfg.ckpt_dir, name, data)    # 1. the checkpoint, durable
        relink_last(cfg.ckpt_dir, name, cfg.bugs)      # 2. last.ckpt -> it, durable
    if cfg.events:                                     # 3. announce the completed save
        append_event(cfg.events, f"saved {step} {os.path.join(cfg.ckpt_dir, name)}")
    if "delete-before-save" not in cfg.bugs:
        prune(cfg.ckpt_dir, step, cfg.keep)            # 4. only then drop old ones


# ---------------------------------------------------------------------------
# Resume.

def resolve_resume_path(arg, ckpt_dir):
    if arg == "last":
        try:
            names = [n for n in os.listdir(ckpt_dir)
                     if n.startswith("last") and n.endswith(".ckpt")]
        except OSError as e:
            raise Refusal(f"cannot list checkpoint directory {ckpt_dir!r}: {e.strerror}")
        if not names:
            raise Refusal(f"no last*.ckpt in checkpoint directory {ckpt_dir!r}")

        def mtime(n):
            p = os.path.join(ckpt_dir, n)
            try:
                return os.stat(p).st_mtime_ns
            except OSError:
                return os.lstat(p).st_mtime_ns
        return os.path.join(ckpt_dir, max(sorted(names), key=mtime))
    if arg == "best":
        path = os.path.join(ckpt_dir, "best.ckpt")
        if not os.path.lexists(path):
            raise Refusal(f"no best checkpoint: this trainer keeps only {LAST} "
                          f"(nothing at {path!r})")
        return path
    return arg


def load_resume(arg, cfg):
    if arg == "":
        raise Refusal("the resume path is empty")
    path = resolve_resume_path(arg, cfg.ckpt_dir)
    if os.path.isdir(path):
        raise Refusal(f"{path!r} is a directory, not a checkpoint file "
                      "(pass a .ckpt file, or 'last')")
    if not os.path.lexists(path):
        raise Refusal(f"checkpoint file not found: {path!r}")
    if not os.path.exists(path):
        raise Refusal(f"{path!r} is a dangling symbolic link "
                      f"(-> {os.readlink(path)!r}, which does not resolve)")
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise Refusal(f"cannot open {path!r}: {e.strerror}")
    try:
        parts = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            parts.append(chunk)
    finally:
        os.close(fd)
    try:
        st = parse_checkpoint(b"".join(parts), cfg.seed, cfg.bugs)
    except Refusal as e:
        raise Refusal(f"{path!r}: {e}")
    step = st["counters"]["global_step"]
    if step > cfg.max_steps:
        raise Refusal(f"{path!r} is at step {step}, beyond CRASHPOINT_MAX_STEPS={cfg.max_steps}")
    return path, st


# ---------------------------------------------------------------------------
# Command line and environment.

class Config:
    pass


def parse_args(argv):
    bug_help = "\n".join(
        f"  {name}\n" + textwrap.fill(desc, width=78, initial_indent=" " * 6,
                                      subsequent_indent=" " * 6)
        for name, desc in BUGS.items())
    ap = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Example crashpoint subject (protocol v1): a small deterministic trainer\n"
            "(linear regression, 256 parameters, Adam, warm-up/decay scheduler, shuffled\n"
            "data, dropout noise) that checkpoints durably and resumes bit for bit."),
        epilog=(
            "environment (protocol v1):\n"
            "  CRASHPOINT_CKPT_DIR    checkpoint directory (default: checkpoints)\n"
            "  CRASHPOINT_MAX_STEPS   train until this global step (default: 20)\n"
            "  CRASHPOINT_SEED        the one seed (default: 0)\n"
            "  CRASHPOINT_RESUME      absent: fresh run; a checkpoint path (relative to\n"
            "                         the working directory), or the keywords 'last'\n"
            "                         (newest last*.ckpt in the directory) or 'best'\n"
            "  CRASHPOINT_STATE_OUT   where the final state JSON goes (default: stdout)\n"
            "  CRASHPOINT_EVENTS      optional: append 'saved <step> <path>' per save\n"
            "  TRAINER_BUG            comma-separated bug names, same as --bug\n"
            "\n"
            "bugs (--bug NAME, repeatable; default: none, the trainer is correct):\n"
            + bug_help + "\n"
            "\n"
            "exit status: 0 done, 1 cannot run or resume (reason on stderr), 2 usage"))
    ap.add_argument("--every", type=int, default=5, metavar="N",
                    help="save a checkpoint every N steps and at the final step (default: 5)")
    ap.add_argument("--keep", type=int, default=2, metavar="K",
                    help="keep the newest K step=<step>.ckpt files (default: 2)")
    ap.add_argument("--bug", action="append", default=[], metavar="NAME",
                    help="switch on a deliberate bug (repeatable), see below")
    ap.add_argument("--step-seconds", type=float, default=0.0, metavar="S",
                    help="simulated compute time per step, to spread time-based kill "
                         "points (default: 0)")
    args = ap.parse_args(argv)
    if args.every < 1:
        ap.error("--every must be at least 1")
    if args.keep < 1:
        ap.error("--keep must be at least 1")
    if args.step_seconds < 0:
        ap.error("--step-seconds must not be negative")
    bugs = set(args.bug)
    bugs.update(b.strip() for b in os.environ.get("TRAINER_BUG", "").split(",") if b.strip())
    unknown = sorted(bugs - set(BUGS))
    if unknown:
        ap.error(f"unknown bug {', '.join(unknown)} (known: {', '.join(BUGS)})")
    if {"cwd-relative-link", "absolute-link"} <= bugs:
        ap.error("--bug cwd-relative-link and --bug absolute-link exclude each other")
    if "no-fsync" in bugs:
        FSYNC[0] = False
    return args, bugs


def env_int(name, default):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise Refusal(f"{name}={raw!r} is not an integer")


def main(argv):
    args, bugs = parse_args(argv)
    proto = os.environ.get("CRASHPOINT_PROTOCOL")
    if proto not in (None, "", "1"):
        log(f"unsupported CRASHPOINT_PROTOCOL={proto!r} (this trainer speaks 1)")
        return EXIT_USAGE

    cfg = Config()
    cfg.bugs, cfg.every, cfg.keep = bugs, args.every, args.keep
    try:
        cfg.ckpt_dir = os.environ.get("CRASHPOINT_CKPT_DIR") or "checkpoints"
        cfg.max_steps = env_int("CRASHPOINT_MAX_STEPS", 20)
        cfg.seed = env_int("CRASHPOINT_SEED", 0)
        if cfg.max_steps < 0:
            raise Refusal("CRASHPOINT_MAX_STEPS must not be negative")
        cfg.events = os.environ.get("CRASHPOINT_EVENTS") or None
        state_out = os.environ.get("CRASHPOINT_STATE_OUT") or None
        resume = os.environ.get("CRASHPOINT_RESUME")

        xs, ys = make_dataset(cfg.seed)
        if resume is None:
            st, resumed_from = initial_state(cfg.seed), 0
        else:
            path, st = load_resume(resume, cfg)
            resumed_from = st["counters"]["global_step"]
            log(f"resumed from {path!r} at step {resumed_from}")

        ensure_dir(cfg.ckpt_dir)
        clean_stale_temporaries(cfg.ckpt_dir)
        if resume is not None:
            # A kill between a save and its top-k pruning leaves extra old files;
            # finish that bookkeeping now (a no-op when nothing is pending).
            prune(cfg.ckpt_dir, resumed_from, cfg.keep)

        while st["counters"]["global_step"] < cfg.max_steps:
            loss = train_step(st, xs, ys)
            if args.step_seconds:
                time.sleep(args.step_seconds)
            step = st["counters"]["global_step"]
            if step % cfg.every == 0 or step == cfg.max_steps:
                save_checkpoint(cfg, st)
                log(f"step {step}: loss {loss:.6g}, saved step={step}.ckpt")
    except Refusal as e:
        log(f"error: {e}")
        return EXIT_FAIL

    report = json.dumps(state_report(st, resumed_from), sort_keys=True) + "\n"
    if state_out:
        fd = os.open(state_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, report.encode())
        finally:
            os.close(fd)
    else:
        sys.stdout.write(report)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

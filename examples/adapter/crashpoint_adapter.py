"""Shared glue between a real training framework and the crashpoint subject protocol v1.

Used by examples/lightning/train.py and examples/hf-trainer/train.py. The module
itself needs only the standard library; the torch helpers at the bottom import
torch (and numpy) when they are called.

What it does:

- read the protocol environment (`Protocol.from_env`): CRASHPOINT_CKPT_DIR,
  CRASHPOINT_MAX_STEPS, CRASHPOINT_SEED, CRASHPOINT_RESUME, CRASHPOINT_STATE_OUT,
  CRASHPOINT_EVENTS (see PROTOCOL.md in the project's shared notes, and the
  project README);
- append `saved <step> <path>` events (`append_saved_event`), one `write()` of a
  whole line on an O_APPEND descriptor, then fsync;
- hash the complete training state bit for bit (`canonical_bytes`, `digest`):
  nested dicts, lists and tuples of bytes, str, int, float, bool and None, with
  an explicit type tag and length for every value, so that no two different
  states encode alike (1 vs 1.0 vs True, -0.0 vs 0.0, NaN payloads, int and str
  dict keys are all told apart); torch tensors and numpy arrays are hashed by
  dtype, shape and raw bytes (`torch_canonical`);
- build and write the state file (`state_report`, `write_state_file`).

The harness compares only digest strings; `fields` (one digest per part:
params, optimizer, scheduler, rng, data, counters) lets a mismatch name the
part that diverged.
"""

import hashlib
import json
import os
import struct
import sys

PROTOCOL_VERSION = "1"

ENV_PROTOCOL = "CRASHPOINT_PROTOCOL"
ENV_CKPT_DIR = "CRASHPOINT_CKPT_DIR"
ENV_MAX_STEPS = "CRASHPOINT_MAX_STEPS"
ENV_SEED = "CRASHPOINT_SEED"
ENV_RESUME = "CRASHPOINT_RESUME"
ENV_STATE_OUT = "CRASHPOINT_STATE_OUT"
ENV_EVENTS = "CRASHPOINT_EVENTS"

# How the state file is written: "direct" (default) or "atomic" (temporary file
# next to it, fsync, rename). The harness deletes the state file before every
# run and reads it only after an exit status of 0, so a torn state file of a
# killed run is never read; and the harness exempts exactly the state file's
# path from its "wrote outside the sandbox" check, so the temporary name of the
# atomic mode is reported as a write outside the sandbox (a warning).
ENV_STATE_WRITE = "CRASHPOINT_ADAPTER_STATE_WRITE"

# Canonical order of the parts of a training state, as the project reports them.
PARTS = ("params", "optimizer", "scheduler", "rng", "data", "counters")


class ProtocolError(Exception):
    """The protocol environment is unusable; the caller reports it and exits 2."""


class Protocol:
    """The protocol environment of one run.

    ckpt_dir   str, exactly as given (may be relative, may contain spaces, '=' and ':')
    max_steps  int >= 0
    seed       int
    resume     None on a fresh run, else the resume argument as given: a path or
               a keyword ('last', 'best'); an empty string is kept (and refused
               by the trainers as an invalid resume argument)
    state_out  str or None (None: print the state JSON on stdout)
    events     str or None
    """

    __slots__ = ("ckpt_dir", "max_steps", "seed", "resume", "state_out", "events")

    def __init__(self, ckpt_dir, max_steps, seed, resume=None, state_out=None, events=None):
        self.ckpt_dir = ckpt_dir
        self.max_steps = max_steps
        self.seed = seed
        self.resume = resume
        self.state_out = state_out
        self.events = events

    @classmethod
    def from_env(cls, environ=None, default_ckpt_dir="checkpoints", default_max_steps=20,
                 default_seed=0):
        env = os.environ if environ is None else environ
        proto = env.get(ENV_PROTOCOL)
        if proto not in (None, "", PROTOCOL_VERSION):
            raise ProtocolError(
                f"unsupported {ENV_PROTOCOL}={proto!r} (this trainer speaks {PROTOCOL_VERSION})")
        ckpt_dir = env.get(ENV_CKPT_DIR) or default_ckpt_dir
        if "\n" in ckpt_dir or "\0" in ckpt_dir:
            raise ProtocolError(f"{ENV_CKPT_DIR} contains a newline or NUL")
        max_steps = _env_int(env, ENV_MAX_STEPS, default_max_steps)
        if max_steps < 0:
            raise ProtocolError(f"{ENV_MAX_STEPS} must not be negative, got {max_steps}")
        seed = _env_int(env, ENV_SEED, default_seed)
        resume = env.get(ENV_RESUME)          # absent: fresh run; "" is kept as given
        state_out = env.get(ENV_STATE_OUT) or None
        events = env.get(ENV_EVENTS) or None
        return cls(ckpt_dir, max_steps, seed, resume, state_out, events)

    @property
    def resuming(self):
        return self.resume is not None

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self):
        return f"Protocol({self.as_dict()!r})"

    def __eq__(self, other):
        return isinstance(other, Protocol) and self.as_dict() == other.as_dict()


def protocol_or_exit(prog, environ=None):
    """Protocol.from_env(), or the error on stderr as `<prog>: error: ...` and
    SystemExit(2): what every example does first."""
    try:
        return Protocol.from_env(environ)
    except ProtocolError as e:
        log(prog, f"error: {e}")
        raise SystemExit(2) from None


def _env_int(env, name, default):
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw.strip(), 10)
    except ValueError:
        raise ProtocolError(f"{name}={raw!r} is not an integer") from None


# ---------------------------------------------------------------------------
# Events.

def format_saved_event(step, path):
    """The line `saved <step> <path>` (no trailing newline). The path is the rest of
    the line, spaces included; a path holding a newline cannot be announced."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    path = os.fspath(path)
    if not path:
        raise ValueError("empty checkpoint path")
    if "\n" in path or "\r" in path or "\0" in path:
        raise ValueError(f"checkpoint path {path!r} holds a line break or NUL")
    return f"saved {step} {path}"


def parse_event(line):
    """Inverse of format_saved_event for `saved` lines: (kind, step, path);
    other kinds come back as (kind, rest, None)."""
    line = line.rstrip("\n")
    kind, _, rest = line.partition(" ")
    if kind == "saved":
        step, _, path = rest.partition(" ")
        return kind, int(step), path
    return kind, rest, None


def append_line(path, line, fsync=True):
    """Append one line with a single write() on an O_APPEND descriptor."""
    data = (line + "\n").encode("utf-8", "surrogateescape")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def append_saved_event(events_path, step, ckpt_path):
    """Announce a completed save (no-op when the run has no events file)."""
    if events_path:
        append_line(events_path, format_saved_event(step, ckpt_path))


# For manual smoke tests without the harness: the examples SIGKILL themselves
# right after the save at this step is complete (and announced), as a crash there
# would. Unset (the default), nothing happens.
ENV_KILL_AFTER_SAVE = "CRASHPOINT_EXAMPLE_KILL_AFTER_SAVE"


def kill_after_save_step(environ=None):
    env = os.environ if environ is None else environ
    raw = env.get(ENV_KILL_AFTER_SAVE, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ProtocolError(f"{ENV_KILL_AFTER_SAVE}={raw!r} is not an integer") from None


def maybe_kill_after_save(step, environ=None):
    if kill_after_save_step(environ) == step:
        import signal
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------------------
# Canonical, bit-exact encoding and hashing.
#
# Every value is a one-byte tag, then a length-prefixed body:
#   N None | T/F bool | i int (signed decimal) | f float (IEEE-754 binary64, big
#   endian: -0.0, inf and every NaN payload distinct) | s str (UTF-8) | b bytes |
#   l list/tuple (count, then items) | d dict (count, then key/value pairs sorted
#   by the encoding of the key) | a array (dtype, shape, raw bytes; from a
#   converter such as torch_canonical)
# Lists and tuples encode alike: states often round-trip tuples through lists.

class Array:
    """A dense array for hashing: dtype name, shape and its raw little-endian bytes."""

    __slots__ = ("dtype", "shape", "data")

    def __init__(self, dtype, shape, data):
        self.dtype = str(dtype)
        self.shape = tuple(int(n) for n in shape)
        self.data = bytes(data)

    def __repr__(self):
        return f"Array({self.dtype!r}, {self.shape!r}, <{len(self.data)} bytes>)"


def _len(n):
    return struct.pack(">Q", n)


def canonical_bytes(obj, convert=None):
    """Encode obj canonically. `convert(x)` is called for any other type and must
    return an encodable value (e.g. an Array); without it such a value is a TypeError."""
    out = bytearray()
    _enc(obj, out, convert)
    return bytes(out)


def _enc(obj, out, convert):
    if obj is None:
        out += b"N"
    elif obj is True:
        out += b"T"
    elif obj is False:
        out += b"F"
    elif isinstance(obj, int):
        body = str(int(obj)).encode()
        out += b"i" + _len(len(body)) + body
    elif isinstance(obj, float):
        out += b"f" + struct.pack(">d", obj)
    elif isinstance(obj, str):
        body = obj.encode("utf-8", "surrogatepass")
        out += b"s" + _len(len(body)) + body
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        body = bytes(obj)
        out += b"b" + _len(len(body)) + body
    elif isinstance(obj, (list, tuple)):
        out += b"l" + _len(len(obj))
        for item in obj:
            _enc(item, out, convert)
    elif isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            kb = bytearray()
            _enc(k, kb, convert)
            items.append((bytes(kb), v))
        items.sort(key=lambda kv: kv[0])
        for a, b in zip(items, items[1:]):
            if a[0] == b[0]:
                raise ValueError("two dict keys encode alike")
        out += b"d" + _len(len(items))
        for kb, v in items:
            out += kb
            _enc(v, out, convert)
    elif isinstance(obj, Array):
        dt = obj.dtype.encode()
        out += b"a" + _len(len(dt)) + dt + _len(len(obj.shape))
        for n in obj.shape:
            out += _len(n)
        out += _len(len(obj.data)) + obj.data
    else:
        if convert is None:
            raise TypeError(f"cannot hash a value of type {type(obj).__name__}")
        conv = convert(obj)
        if conv is obj:
            raise TypeError(f"converter returned the {type(obj).__name__} unchanged")
        _enc(conv, out, convert)


def digest(obj, convert=None):
    """sha256 hex digest of the canonical encoding of obj."""
    return hashlib.sha256(canonical_bytes(obj, convert)).hexdigest()


def state_report(step, parts, resumed_from_step, convert=None, extra=None):
    """The protocol's state object.

    parts: {name: value} of the complete training state (see PARTS); each part is
    hashed into `fields`, and `digest` covers all parts and the step.
    resumed_from_step: the step of the loaded checkpoint, or None for a fresh start.
    """
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int, got {step!r}")
    if resumed_from_step is not None and (isinstance(resumed_from_step, bool)
                                          or not isinstance(resumed_from_step, int)):
        raise TypeError(f"resumed_from_step must be an int or None, got {resumed_from_step!r}")
    fields = {name: digest(value, convert) for name, value in parts.items()}
    report = {
        "step": step,
        "digest": digest({"step": step, "fields": fields}),
        "resumed_from_step": resumed_from_step,
        "fields": dict(sorted(fields.items())),
    }
    if extra:
        for k, v in extra.items():
            if k in report:
                raise ValueError(f"extra key {k!r} would override a protocol key")
            report[k] = v
    return report


def dumps_report(report):
    return json.dumps(report, sort_keys=True) + "\n"


def write_state_file(path, report, mode=None):
    """Write the state JSON to `path` (stdout when path is None).

    mode "direct" (default, or CRASHPOINT_ADAPTER_STATE_WRITE): open with
    O_TRUNC, one write loop, fsync. mode "atomic": a temporary file in the same
    directory, fsync, rename over `path`, fsync of the directory.
    """
    text = report if isinstance(report, str) else dumps_report(report)
    data = text.encode()
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    mode = mode or os.environ.get(ENV_STATE_WRITE) or "direct"
    if mode == "direct":
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    elif mode == "atomic":
        directory = os.path.dirname(os.path.abspath(path))
        tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    else:
        raise ValueError(f"unknown state write mode {mode!r} (direct or atomic)")


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def log(prog, msg):
    sys.stderr.write(f"{prog}: {msg}\n")
    sys.stderr.flush()


def same_path(a, b):
    """True when a and b name the same file (after resolving links), or are equal strings."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def derive_seed(seed, purpose, bits=63):
    """A sub-seed for one purpose, from the one protocol seed."""
    h = hashlib.sha256(f"crashpoint/{seed}/{purpose}".encode()).digest()
    return int.from_bytes(h[:8], "big") & ((1 << bits) - 1)


# ---------------------------------------------------------------------------
# torch / numpy helpers (imported lazily; everything above is stdlib only).

def torch_canonical(obj):
    """Converter for canonical_bytes: torch tensors, numpy arrays and scalars,
    torch.Size/dtype/device, generators' states. Raises TypeError otherwise."""
    mod = type(obj).__module__ or ""
    if mod.startswith("torch"):
        import torch
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            if t.is_quantized or t.layout != torch.strided:
                raise TypeError(f"cannot hash a {t.layout} tensor")
            raw = t.reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
            return Array(str(t.dtype), tuple(t.shape), raw.numpy().tobytes())
        if isinstance(obj, torch.Size):
            return list(obj)
        if isinstance(obj, (torch.dtype, torch.device)):
            return str(obj)
    if mod.startswith("numpy"):
        import numpy as np
        if isinstance(obj, np.ndarray):
            a = np.ascontiguousarray(obj)
            if a.dtype.hasobject:
                return a.tolist()
            return Array(a.dtype.str, a.shape, a.tobytes())
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.dtype):
            return obj.str
    raise TypeError(f"cannot hash a value of type {type(obj).__module__}.{type(obj).__name__}")


def rng_states(cuda=False):
    """The global RNG states a training run draws from: python `random`,
    numpy's legacy global generator and torch's CPU generator (and CUDA's when
    asked and available), as python ints, floats, str, tuples, lists and torch
    tensors only. Restored by set_rng_states."""
    import random
    import numpy as np
    import torch
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    st = {
        "python": random.getstate(),
        # plain ints, so that torch.load(weights_only=True) (the default from
        # torch 2.6) accepts a checkpoint holding it; no numpy array inside
        "numpy": (str(kind), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if cuda and torch.cuda.is_available():
        st["torch_cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_states(st):
    import random
    import numpy as np
    import torch
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = st["numpy"]
    np.random.set_state((npst[0], np.asarray(npst[1], dtype=np.uint32), int(npst[2]),
                         int(npst[3]), float(npst[4])))
    torch.set_rng_state(st["torch"])
    if "torch_cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["torch_cuda"])


def tiny_regression(seed, samples=64, in_dim=16, hidden=32, dropout=0.1):
    """Synthetic regression data (x, y) and a tiny MLP, both made from `seed` alone
    (torch's global RNG is seeded for the model's initialisation): the problem the
    plain torch loop, Accelerate, timm and DCP examples train on."""
    import torch
    from torch import nn
    g = torch.Generator().manual_seed(derive_seed(seed, "dataset"))
    x = torch.randn(samples, in_dim, generator=g)
    y = x @ torch.randn(in_dim, 1, generator=g) + 0.1 * torch.randn(samples, 1, generator=g)
    torch.manual_seed(derive_seed(seed, "init"))
    model = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                          nn.Linear(hidden, 1))
    return x, y, model


def epoch_batch(seed, epoch, pos, batch, samples):
    """The sample indices of the batch at position `pos` of epoch `epoch`: a
    permutation drawn from (seed, epoch) alone, so a resume mid-epoch continues it."""
    import torch
    g = torch.Generator().manual_seed(derive_seed(seed, f"epoch-{epoch}"))
    return torch.randperm(samples, generator=g).tolist()[pos:pos + batch]


def torch_state_report(step, parts, resumed_from_step, extra=None):
    """state_report with the torch/numpy converter."""
    return state_report(step, parts, resumed_from_step, convert=torch_canonical, extra=extra)

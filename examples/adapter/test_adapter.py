"""Tests of the pure-Python parts of crashpoint_adapter (standard library only, no torch).

    python3 -m unittest discover -s examples/adapter
"""

import json
import os
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import crashpoint_adapter as ca  # noqa: E402


class EnvTest(unittest.TestCase):
    def test_defaults(self):
        p = ca.Protocol.from_env({})
        self.assertEqual(p.ckpt_dir, "checkpoints")
        self.assertEqual(p.max_steps, 20)
        self.assertEqual(p.seed, 0)
        self.assertIsNone(p.resume)
        self.assertFalse(p.resuming)
        self.assertIsNone(p.state_out)
        self.assertIsNone(p.events)

    def test_full(self):
        env = {
            "CRASHPOINT_PROTOCOL": "1",
            "CRASHPOINT_CKPT_DIR": "runs/exp 1/ckpt=v1:a",
            "CRASHPOINT_MAX_STEPS": "8",
            "CRASHPOINT_SEED": "-3",
            "CRASHPOINT_RESUME": "runs/exp 1/ckpt=v1:a/last.ckpt",
            "CRASHPOINT_STATE_OUT": "/x/state.json",
            "CRASHPOINT_EVENTS": "/x/events",
        }
        p = ca.Protocol.from_env(env)
        self.assertEqual(p.ckpt_dir, "runs/exp 1/ckpt=v1:a")   # kept exactly as given
        self.assertEqual(p.max_steps, 8)
        self.assertEqual(p.seed, -3)
        self.assertEqual(p.resume, "runs/exp 1/ckpt=v1:a/last.ckpt")
        self.assertTrue(p.resuming)
        self.assertEqual(p.state_out, "/x/state.json")
        self.assertEqual(p.events, "/x/events")
        self.assertEqual(p, ca.Protocol.from_env(dict(env)))

    def test_keywords_and_empty_resume_kept(self):
        self.assertEqual(ca.Protocol.from_env({"CRASHPOINT_RESUME": "last"}).resume, "last")
        p = ca.Protocol.from_env({"CRASHPOINT_RESUME": ""})
        self.assertEqual(p.resume, "")
        self.assertTrue(p.resuming)

    def test_empty_optional_paths_are_absent(self):
        p = ca.Protocol.from_env({"CRASHPOINT_STATE_OUT": "", "CRASHPOINT_EVENTS": "",
                                  "CRASHPOINT_CKPT_DIR": "", "CRASHPOINT_MAX_STEPS": " "})
        self.assertIsNone(p.state_out)
        self.assertIsNone(p.events)
        self.assertEqual(p.ckpt_dir, "checkpoints")
        self.assertEqual(p.max_steps, 20)

    def test_bad_values(self):
        for env in ({"CRASHPOINT_MAX_STEPS": "ten"}, {"CRASHPOINT_MAX_STEPS": "-1"},
                    {"CRASHPOINT_SEED": "1.5"}, {"CRASHPOINT_PROTOCOL": "2"},
                    {"CRASHPOINT_CKPT_DIR": "a\nb"}):
            with self.subTest(env=env), self.assertRaises(ca.ProtocolError):
                ca.Protocol.from_env(env)

    def test_protocol_or_exit(self):
        import contextlib
        import io
        self.assertEqual(ca.protocol_or_exit("t", {"CRASHPOINT_SEED": "3"}).seed, 3)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as cm:
            ca.protocol_or_exit("t", {"CRASHPOINT_PROTOCOL": "2"})
        self.assertEqual(cm.exception.code, 2)
        self.assertTrue(err.getvalue().startswith("t: error: unsupported CRASHPOINT_PROTOCOL"))

    def test_custom_defaults(self):
        p = ca.Protocol.from_env({}, default_ckpt_dir="out", default_max_steps=3, default_seed=7)
        self.assertEqual((p.ckpt_dir, p.max_steps, p.seed), ("out", 3, 7))


class EventTest(unittest.TestCase):
    def test_format(self):
        self.assertEqual(ca.format_saved_event(5, "ckpt/step=5.ckpt"), "saved 5 ckpt/step=5.ckpt")
        line = ca.format_saved_event(12, "runs/exp 1/ckpt=v1:a/checkpoint-12")
        self.assertEqual(line, "saved 12 runs/exp 1/ckpt=v1:a/checkpoint-12")
        self.assertEqual(ca.parse_event(line + "\n"),
                         ("saved", 12, "runs/exp 1/ckpt=v1:a/checkpoint-12"))

    def test_format_refuses(self):
        for step, path in ((-1, "a"), (True, "a"), (1.0, "a"), (1, ""), (1, "a\nb"), (1, "a\0")):
            with self.subTest(step=step, path=path), self.assertRaises(ValueError):
                ca.format_saved_event(step, path)

    def test_append(self):
        with tempfile.TemporaryDirectory() as d:
            ev = os.path.join(d, "events")
            ca.append_saved_event(ev, 5, "c/step=5.ckpt")
            ca.append_saved_event(ev, 10, "c/step 10.ckpt")
            ca.append_saved_event(None, 15, "ignored")        # no events file: no-op
            with open(ev) as f:
                self.assertEqual(f.read(), "saved 5 c/step=5.ckpt\nsaved 10 c/step 10.ckpt\n")


class CanonicalTest(unittest.TestCase):
    def enc(self, x):
        return ca.canonical_bytes(x)

    def test_types_are_distinct(self):
        values = [None, True, False, 0, 1, -1, 0.0, -0.0, 1.0, float("inf"), float("-inf"),
                  float("nan"), "", "1", b"", b"1", [], [1], {}, {"1": 1}, {1: 1},
                  [[]], [None], ca.Array("float32", (0,), b""), ca.Array("float32", (1,), b"\0" * 4),
                  ca.Array("int32", (1,), b"\0" * 4), ca.Array("float32", (1, 1), b"\0" * 4)]
        encs = [self.enc(v) for v in values]
        self.assertEqual(len(set(encs)), len(encs))

    def test_nan_payloads_distinct(self):
        a = struct.unpack(">d", bytes.fromhex("7ff8000000000000"))[0]
        b = struct.unpack(">d", bytes.fromhex("7ff8000000000001"))[0]
        self.assertNotEqual(self.enc(a), self.enc(b))
        self.assertEqual(self.enc(a), self.enc(struct.unpack(">d", bytes.fromhex("7ff8000000000000"))[0]))

    def test_dict_order_does_not_matter(self):
        a = {"b": 1, "a": [1, 2], 3: b"x"}
        b = {3: b"x", "a": [1, 2], "b": 1}
        self.assertEqual(self.enc(a), self.enc(b))
        self.assertEqual(ca.digest(a), ca.digest(b))

    def test_list_and_tuple_alike(self):
        self.assertEqual(self.enc((1, (2.5, b"x"))), self.enc([1, [2.5, b"x"]]))

    def test_nesting_is_unambiguous(self):
        self.assertNotEqual(self.enc([[1], 2]), self.enc([[1, 2]]))
        self.assertNotEqual(self.enc(["ab", "c"]), self.enc(["a", "bc"]))
        self.assertNotEqual(self.enc({"a": "bc"}), self.enc({"ab": "c"}))
        self.assertNotEqual(self.enc(b"ab" + b"c"), self.enc([b"ab", b"c"]))

    def test_every_bit_counts(self):
        base = [0.1 * i for i in range(50)]
        d0 = ca.digest({"params": base})
        for i in (0, 17, 49):
            changed = list(base)
            bits = struct.unpack(">Q", struct.pack(">d", changed[i]))[0] ^ 1
            changed[i] = struct.unpack(">d", struct.pack(">Q", bits))[0]
            self.assertNotEqual(ca.digest({"params": changed}), d0)
        blob = bytearray(range(256))
        d1 = ca.digest(bytes(blob))
        blob[100] ^= 0x80
        self.assertNotEqual(ca.digest(bytes(blob)), d1)

    def test_big_ints(self):
        self.assertNotEqual(self.enc(2 ** 64), self.enc(2 ** 64 + 1))
        self.assertNotEqual(self.enc(-(2 ** 70)), self.enc(2 ** 70))

    def test_unknown_type(self):
        with self.assertRaises(TypeError):
            self.enc(object())
        with self.assertRaises(TypeError):
            self.enc({1, 2})

    def test_converter(self):
        class Vec:
            def __init__(self, xs):
                self.xs = xs

        conv = lambda v: ca.Array("float64", (len(v.xs),), struct.pack(f"<{len(v.xs)}d", *v.xs))
        a = ca.digest({"w": Vec([1.0, 2.0])}, conv)
        self.assertEqual(a, ca.digest({"w": Vec([1.0, 2.0])}, conv))
        self.assertNotEqual(a, ca.digest({"w": Vec([1.0, 2.5])}, conv))
        with self.assertRaises(TypeError):
            ca.canonical_bytes(Vec([1.0]), lambda v: v)       # a converter that converts nothing

    def test_known_digest_is_stable(self):
        # The encoding is part of the examples' contract: a change here changes every digest.
        self.assertEqual(self.enc({"a": [1, 2.0, b"x", None, True]}).hex(),
                         "64" + "0000000000000001" + "73" + "0000000000000001" + "61"
                         + "6c" + "0000000000000005"
                         + "69" + "0000000000000001" + "31"
                         + "66" + "4000000000000000"
                         + "62" + "0000000000000001" + "78"
                         + "4e" + "54")


class ReportTest(unittest.TestCase):
    def test_report(self):
        parts = {"params": [1.0, 2.0], "optimizer": {"t": 3}, "rng": b"\x01\x02",
                 "data": {"pos": 4}, "counters": {"global_step": 8}}
        r = ca.state_report(8, parts, None)
        self.assertEqual(r["step"], 8)
        self.assertIsNone(r["resumed_from_step"])
        self.assertEqual(sorted(r["fields"]), sorted(parts))
        self.assertEqual(r["fields"]["params"], ca.digest([1.0, 2.0]))
        self.assertEqual(r, ca.state_report(8, dict(reversed(list(parts.items()))), None))
        r5 = ca.state_report(8, parts, 5)
        self.assertEqual(r5["resumed_from_step"], 5)
        self.assertEqual(r5["digest"], r["digest"])      # where it resumed from is not state
        changed = dict(parts, data={"pos": 5})
        r2 = ca.state_report(8, changed, None)
        self.assertNotEqual(r2["digest"], r["digest"])
        self.assertEqual(r2["fields"]["params"], r["fields"]["params"])
        self.assertNotEqual(r2["fields"]["data"], r["fields"]["data"])
        self.assertNotEqual(ca.state_report(9, parts, None)["digest"], r["digest"])

    def test_report_extra_and_types(self):
        r = ca.state_report(1, {"params": []}, 0, extra={"framework": "x 1.0"})
        self.assertEqual(r["framework"], "x 1.0")
        with self.assertRaises(ValueError):
            ca.state_report(1, {}, 0, extra={"digest": "forged"})
        with self.assertRaises(TypeError):
            ca.state_report(True, {}, None)
        with self.assertRaises(TypeError):
            ca.state_report(1, {}, "5")

    def test_write_state_file(self):
        r = ca.state_report(3, {"params": [0.5]}, None)
        with tempfile.TemporaryDirectory() as d:
            for mode in ("direct", "atomic"):
                with self.subTest(mode=mode):
                    path = os.path.join(d, f"state-{mode}.json")
                    with open(path, "w") as f:
                        f.write("old content that is longer than the new one" * 100)
                    ca.write_state_file(path, r, mode=mode)
                    with open(path) as f:
                        text = f.read()
                    self.assertTrue(text.endswith("\n"))
                    self.assertEqual(json.loads(text), r)
            self.assertEqual(sorted(os.listdir(d)), ["state-atomic.json", "state-direct.json"])
            with self.assertRaises(ValueError):
                ca.write_state_file(os.path.join(d, "x"), r, mode="sideways")

    def test_env_selects_write_mode(self):
        r = ca.state_report(3, {"params": [0.5]}, None)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state.json")
            old = os.environ.get(ca.ENV_STATE_WRITE)
            os.environ[ca.ENV_STATE_WRITE] = "atomic"
            try:
                ca.write_state_file(path, r)
            finally:
                if old is None:
                    del os.environ[ca.ENV_STATE_WRITE]
                else:
                    os.environ[ca.ENV_STATE_WRITE] = old
            with open(path) as f:
                self.assertEqual(json.load(f), r)


class KillSwitchTest(unittest.TestCase):
    def test_parse(self):
        self.assertIsNone(ca.kill_after_save_step({}))
        self.assertIsNone(ca.kill_after_save_step({ca.ENV_KILL_AFTER_SAVE: ""}))
        self.assertEqual(ca.kill_after_save_step({ca.ENV_KILL_AFTER_SAVE: "10"}), 10)
        with self.assertRaises(ca.ProtocolError):
            ca.kill_after_save_step({ca.ENV_KILL_AFTER_SAVE: "ten"})

    def test_other_steps_do_nothing(self):
        ca.maybe_kill_after_save(5, {ca.ENV_KILL_AFTER_SAVE: "10"})
        ca.maybe_kill_after_save(5, {})

    def test_kills_at_its_step(self):
        import subprocess
        here = os.path.dirname(os.path.abspath(__file__))
        code = ("import sys; sys.path.insert(0, %r); import crashpoint_adapter as ca; "
                "ca.maybe_kill_after_save(10); print('survived')" % here)
        env = dict(os.environ, **{ca.ENV_KILL_AFTER_SAVE: "10"})
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        self.assertEqual(p.returncode, -9)
        self.assertEqual(p.stdout, "")


class MiscTest(unittest.TestCase):
    def test_derive_seed(self):
        a = ca.derive_seed(0, "data")
        self.assertEqual(a, ca.derive_seed(0, "data"))
        self.assertNotEqual(a, ca.derive_seed(1, "data"))
        self.assertNotEqual(a, ca.derive_seed(0, "init"))
        self.assertLess(a, 2 ** 63)
        self.assertLess(ca.derive_seed(0, "x", bits=32), 2 ** 32)

    def test_same_path(self):
        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, "f")
            open(f, "w").close()
            os.symlink("f", os.path.join(d, "l"))
            self.assertTrue(ca.same_path(f, os.path.join(d, "l")))
            self.assertTrue(ca.same_path(os.path.join(d, "missing"), os.path.join(d, ".", "missing")))
            self.assertFalse(ca.same_path(f, os.path.join(d, "missing")))

    def test_module_imports_no_torch(self):
        self.assertNotIn("torch", sys.modules)


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env bash
# Checks the HTML report in a real browser: builds a report of a trainer with
# a relink bug (the simulated trainer's `unlink-then-link` mutant), loads the
# page in headless Chromium (Debian's `chromium` package; nothing else is
# fetched, the page needs no network), takes a screenshot, and checks the
# cells of the rendered DOM against the JSON report: one cell per crash point
# of the census and per other case, each with the class of its outcome; and
# that the page's script ran (the focused cell's call and path fill the panel).
#
#   cargo build --release && docs/html-check.sh [OUT_DIR]
#
# OUT_DIR (default: a new temporary directory) receives report.json,
# report.html, dom.html and report.png. docs/html-report.png is one such
# screenshot. Set CRASHPOINT to use another binary, CHROMIUM another browser,
# JOBS the workers (default 2; the report is the same whatever the number).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
bin=${CRASHPOINT:-./target/release/crashpoint}
browser=${CHROMIUM:-chromium}
command -v "$browser" >/dev/null || { echo "html-check: no $browser (apt-get install chromium)" >&2; exit 2; }

"$bin" run scenarios/relative.toml --mutant unlink-then-link --quiet --jobs "${JOBS:-2}" \
    --json "$out/report.json" --html "$out/report.html" > "$out/run.txt"

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking
       --disable-component-update --disable-sync --no-first-run
       --user-data-dir="$profile")
# The fragment focuses one cell: the unlink of last.ckpt after the save of step 10.
url="file://$(cd "$out" && pwd)/report.html#relative/op:16:before"
"$browser" "${flags[@]}" --window-size=1200,700 --screenshot="$out/report.png" "$url" 2>/dev/null
"$browser" "${flags[@]}" --dump-dom "$url" > "$out/dom.html" 2>/dev/null

python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
report = json.load(open(f"{out}/report.json"))
dom = open(f"{out}/dom.html").read()
cells = re.findall(r'<button type="button" class="cell ([^"]*)" data-layout="([^"]*)" data-point="([^"]*)"', dom)
problems = []
kinds = ["digest-mismatch", "resume-failed", "restart-failed", "dangling-last", "escaped-dir", "progress-lost",
         "no-checkpoint", "hang", "dir-mismatch", "bad-resume-accepted", "wrote-outside",
         "nondeterministic", "overshoot"]
def expected_class(case):
    if case is None:
        return "k-not-run"
    ks = sorted(case.get("kinds", []), key=kinds.index)
    same = case.get("same_state_as") is not None
    if not ks:
        return "k-same-state" if same else "k-passed"
    return f"k-{ks[0]}" + (" same" if same else "")
want = []
for layout in report["layouts"]:
    cases = [c for c in report["case_results"] if c["layout"] == layout["layout"]]
    by_first = {}
    for c in cases:
        by_first.setdefault(c["point"].split(",")[0], c)
    points = [p["point"] for p in layout["census_points"]]
    for p in points:
        want.append((expected_class(by_first.get(p)), layout["layout"], p))
    for c in cases:
        if c["point"].split(",")[0] not in points:
            want.append((expected_class(c), layout["layout"], c["point"]))
if cells != want:
    problems.append(f"cells differ from the report: {len(cells)} rendered, {len(want)} expected")
counts = {}
for cls, _, _ in cells:
    counts[cls] = counts.get(cls, 0) + 1
if not any(c.startswith("k-") and c not in ("k-passed", "k-not-run") for c in counts):
    problems.append("no failing cell: the relink window is not shown")
m = re.search(r'<aside id="detail"[^>]*>\s*<div class="name">([^<]*)</div>', dom)
if not m or "op:16:before" not in m.group(1):
    problems.append(f"the script did not show the focused cell: {m.group(1) if m else 'no panel'}")
if re.search(r'https?://', dom):
    problems.append("the page names a network address")
print(f"html-check: {len(cells)} cells: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
for p in problems:
    print(f"html-check: FAIL: {p}")
sys.exit(1 if problems else 0)
PY
echo "html-check: ok; screenshot $out/report.png"

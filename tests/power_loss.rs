//! The power-loss fault model end to end, through `certify` and the Python
//! example: the correct trainer (fsync of file and directory) is certified
//! under power loss; its `no-fsync` bug is caught by power loss, with the
//! unsynced operation the failing state dropped named, and passes process
//! kills.

use std::process::{Command, Output};

mod common;
use common::{root, text};

fn trainer() -> String {
    root()
        .join("examples/python/trainer.py")
        .display()
        .to_string()
}

/// `crashpoint certify` on one layout, 8 steps (saves at steps 5 and 8),
/// with `extra` flags; returns the output, the JSON report and the JUnit.
fn certify(extra: &[&str], bug: Option<&str>) -> (Output, serde_json::Value, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let junit = dir.path().join("report.xml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crashpoint"));
    cmd.current_dir(root())
        .args([
            "certify",
            "--layouts",
            "relative",
            "--max-steps",
            "8",
            "--jobs",
            "2",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .args(extra)
        .args(["--", "python3"])
        .arg(trainer());
    if let Some(b) = bug {
        cmd.args(["--bug", b]);
    }
    let o = cmd.output().expect("crashpoint runs");
    let v = std::fs::read_to_string(&json)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null);
    let x = std::fs::read_to_string(&junit).unwrap_or_default();
    (o, v, x)
}

#[test]
fn power_loss_certifies_the_correct_python_trainer_with_drawn_states() {
    let (o, v, x) = certify(&["--fault", "power-loss", "--states", "2"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(v["fault"], "power-loss", "{v}");
    assert_eq!(v["certified"], true);
    assert!(v["cases"].as_u64().unwrap_or(0) >= 10, "{v}");
    let verdict = text(&o)
        .lines()
        .find(|l| l.contains("fault model: power-loss: "))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(verdict.ends_with(": CERTIFIED"), "{}", text(&o));
    // Every reached point was judged in 1 to 3 disk states (--states 2).
    let states = text(&o)
        .lines()
        .find_map(|l| l.strip_prefix("relative: power loss: "))
        .map(str::to_string)
        .unwrap_or_default();
    let judged: usize = states
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let cases = v["cases"].as_u64().unwrap_or(0) as usize;
    assert!(judged > cases - 3 && judged <= 3 * cases, "{states}");
    assert!(states.ends_with("per point)"), "{states}");
    assert!(x.contains(r#"name="fault" value="power-loss""#), "{x}");
}

#[test]
fn power_loss_catches_the_no_fsync_trainer_and_names_what_was_dropped() {
    let (o, v, x) = certify(&["--fault", "power-loss"], Some("no-fsync"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(v["fault"], "power-loss");
    let failures = v["failures"].as_array().expect("failures");
    let kinds: Vec<&str> = failures.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert!(
        kinds
            .iter()
            .any(|k| ["no-checkpoint", "progress-lost", "resume-failed"].contains(k)),
        "{kinds:?}"
    );
    let no_ckpt = failures
        .iter()
        .find(|f| f["kind"] == "no-checkpoint")
        .expect("a no-checkpoint failure");
    let detail = no_ckpt["detail"].as_str().unwrap_or("");
    assert!(detail.contains("not made durable"), "{detail}");
    assert!(detail.contains("never fsynced"), "{detail}");
    let replay = no_ckpt["replay"].as_str().unwrap_or("");
    assert!(replay.contains("--fault power-loss"), "{replay}");
    assert!(x.contains("power-loss"), "{x}");
}

#[test]
fn process_kills_cannot_see_the_no_fsync_bug() {
    let (o, v, _) = certify(&["--fault", "kill"], Some("no-fsync"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(v["fault"], "kill");
    assert_eq!(v["certified"], true);
}

#[test]
fn power_loss_refuses_time_mode_and_states_without_it() {
    let (o, _, _) = certify(&["--fault", "power-loss", "--mode", "time"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--fault power-loss needs --mode syscall"),
        "{}",
        text(&o)
    );
    let (o, _, _) = certify(&["--states", "2"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let (o, _, _) = certify(&["--fault", "power"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("unknown fault model `power`"),
        "{}",
        text(&o)
    );
}

#[test]
fn scenario_fault_values_are_checked_with_file_line_and_field() {
    use crashpoint::fault::{Fault, FaultModel};
    use crashpoint::scenario::Scenario;
    let s = Scenario::parse("a.toml", "fault = [\"kill\", \"power-loss\"]\nstates = 3\n")
        .expect("valid");
    assert_eq!(s.faults, vec![FaultModel::KILL, FaultModel::power_loss(3)]);
    let s = Scenario::parse("b.toml", "fault = \"power-loss\"\n").expect("valid");
    assert_eq!(s.faults[0].fault, Fault::PowerLoss);
    let e = Scenario::parse("c.toml", "max_steps = 5\nfault = \"power\"\n")
        .expect_err("unknown fault")
        .to_string();
    assert!(
        e.contains("c.toml") && e.contains(":2:") && e.contains("fault"),
        "{e}"
    );
    assert!(e.contains("unknown fault model `power`"), "{e}");
    let e = Scenario::parse("d.toml", "fault = 3\n")
        .expect_err("not a name")
        .to_string();
    assert!(
        e.contains("expected \"kill\", \"power-loss\" or a list of them"),
        "{e}"
    );
    let e = Scenario::parse("e.toml", "states = 2\n")
        .expect_err("states alone")
        .to_string();
    assert!(e.contains("states goes with fault = \"power-loss\""), "{e}");
    let e = Scenario::parse(
        "f.toml",
        "fault = \"power-loss\"\n[crash]\nmode = \"time\"\n",
    )
    .expect_err("time mode")
    .to_string();
    assert!(e.contains("power-loss needs crash.mode"), "{e}");
}

#[test]
fn a_power_loss_failure_replays_to_the_same_findings() {
    let (o, v, _) = certify(
        &["--fault", "power-loss", "--states", "1"],
        Some("no-fsync"),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let failures = v["failures"].as_array().expect("failures");
    let first = failures.first().expect("a failure");
    let replay = first["replay"].as_str().expect("a replay command");
    assert!(replay.contains("--fault power-loss --states 1"), "{replay}");
    let crash = first["crash"].as_str().expect("a crash point");
    let same = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["crash"] == crash)
            .map(|f| (f["kind"].to_string(), f["detail"].to_string()))
            .collect()
    };
    // The replay, with a JSON report of its own.
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("replay.json");
    let cmd = replay.replacen(
        " certify ",
        &format!(" certify --json '{}' ", json.display()),
        1,
    );
    let r = Command::new("sh")
        .args(["-c", &cmd])
        .current_dir(root())
        .output()
        .expect("the replay runs");
    assert_eq!(r.status.code(), Some(1), "{cmd}\n{}", text(&r));
    let rv: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("replay report"))
            .expect("JSON");
    assert_eq!(rv["fault"], "power-loss");
    assert_eq!(rv["cases"], 1, "{rv}");
    assert_eq!(same(&rv), same(&v), "{cmd}");
}

#[test]
fn run_takes_the_fault_model_and_its_states_from_the_command_line() {
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_crashpoint"))
            .current_dir(root())
            .args(["run", "scenarios/relative.toml", "--jobs", "2"])
            .args(extra)
            .output()
            .expect("crashpoint runs")
    };
    let o = run(&["--fault", "power-loss", "--states", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.lines().any(|l| l
            .split_whitespace()
            .take(3)
            .eq(["relative", "power-loss", "relative"])),
        "{t}"
    );
    let o = run(&["--states", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--states goes with --fault power-loss"),
        "{}",
        text(&o)
    );
}

/// `crashpoint certify` of the simulated trainer with the `no-fsync-rename`
/// mutant under power loss (`extra` flags added), its JSON report in `json`.
fn certify_sim(json: &std::path::Path, extra: &[&str]) -> Output {
    let exe = env!("CARGO_BIN_EXE_crashpoint");
    Command::new(exe)
        .current_dir(root())
        .args([
            "certify",
            "--quiet",
            "--fault",
            "power-loss",
            "--states",
            "2",
        ])
        .args(["--layouts", "relative", "--cases", "8", "--max-steps", "10"])
        .args(["--jobs", "2", "--json"])
        .arg(json)
        .args(extra)
        .args(["--", exe, "sim", "--mutant", "no-fsync-rename"])
        .args(["--every-n-steps", "5"])
        .output()
        .expect("crashpoint runs")
}

#[test]
fn power_loss_states_judged_are_in_the_json_and_partitions_merge_to_the_same_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n);
    let whole = certify_sim(&p("whole.json"), &[]);
    assert_eq!(whole.status.code(), Some(1), "{}", text(&whole));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("whole.json")).expect("json"))
            .expect("parses");
    // The count of disk states judged is the cases' own, summed.
    let row = &v["layouts"][0]["power_states"];
    let cases = v["case_results"].as_array().expect("cases");
    let per_case: Vec<u64> = cases
        .iter()
        .filter_map(|c| c["power_states"].as_u64())
        .collect();
    assert_eq!(per_case.len(), 8, "the 8 crash cases, not the probes: {v}");
    assert_eq!(row["judged"].as_u64(), Some(per_case.iter().sum()), "{row}");
    assert_eq!(row["points"], 8, "{row}");
    assert_eq!(
        row["min_per_point"].as_u64(),
        per_case.iter().min().copied()
    );
    assert_eq!(
        row["max_per_point"].as_u64(),
        per_case.iter().max().copied()
    );
    assert!(
        row["max_per_point"]
            .as_u64()
            .is_some_and(|n| n > 1 && n <= 3),
        "{row}"
    );
    for i in 1..=2 {
        let part = format!("{i}/2");
        let o = certify_sim(&p(&format!("p{i}.json")), &["--partition", &part]);
        assert!(o.status.code().is_some_and(|c| c < 2), "{}", text(&o));
    }
    let merged = Command::new(env!("CARGO_BIN_EXE_crashpoint"))
        .arg("merge")
        .args([p("p2.json"), p("p1.json")])
        .arg("--json")
        .arg(p("merged.json"))
        .output()
        .expect("merge runs");
    assert_eq!(merged.status.code(), Some(1), "{}", text(&merged));
    assert_eq!(
        std::fs::read_to_string(p("merged.json")).expect("merged"),
        std::fs::read_to_string(p("whole.json")).expect("whole"),
        "merged partitions differ from the single machine's report"
    );
    // Under process kills there is no such field.
    let kill = Command::new(env!("CARGO_BIN_EXE_crashpoint"))
        .current_dir(root())
        .args([
            "certify",
            "--quiet",
            "--layouts",
            "relative",
            "--cases",
            "2",
        ])
        .args(["--json"])
        .arg(p("kill.json"))
        .args(["--", env!("CARGO_BIN_EXE_crashpoint"), "sim"])
        .output()
        .expect("crashpoint runs");
    assert!(kill.status.code().is_some_and(|c| c < 2), "{}", text(&kill));
    let k = std::fs::read_to_string(p("kill.json")).expect("json");
    assert!(!k.contains("power_states"), "{k}");
}

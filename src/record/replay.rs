//! The record-once engine's runs ([`crate::oracle::Runs`]): a run whose crash
//! point was recorded is replaced by its crash state, materialised; a run
//! that starts from a known state is made once and remembered (the state
//! it left, its state file, how it ended), and every later case that
//! starts a run from the same state gets that effect put in place.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::later::{self, LaterState, Lineage, Memo, Resumed, RunAt, Step, Wanted};
use super::same::SameCases;
use super::{PointRecord, Recording};
use crate::inject::{CrashPlan, CrashPoint};
use crate::layout::Sandbox;
use crate::observe::HarnessFiles;
use crate::oracle::{CaseRuns, Runs, SeenSlot, Target};
use crate::runner::{self, Exit, RunRequest, RunResult, RunnerError};
use crate::store::{
    clear_for, materialise, Capturer, Manifest, Relocation, StateId, Store, StoreError,
};

/// A run is the same as another when it starts from the same state, is
/// the same run of its case (so the layout has moved the same way) and has
/// the same crash point and resume request.
type MemoKey = (StateId, usize, Option<CrashPoint>, bool);

type Slot = Arc<OnceLock<Result<Memo, String>>>;

/// A recorded resume run is the same as another when its case went through
/// the same crash states (so it is the same run of its case, from the same
/// state, and the same plans crash next in it) and it has the same resume
/// request.
type LaterKey = (Lineage, bool);

type LaterSlot = Arc<OnceLock<Result<Resumed, String>>>;

/// The engine for one layout: its recording and the runs remembered so far.
#[derive(Debug)]
pub struct Replayer<'r> {
    store: &'r Store,
    recording: &'r Recording,
    memo: Mutex<HashMap<MemoKey, Slot>>,
    /// The probes' uninterrupted runs, by the length of the case directory
    /// they were made in.
    probes: Mutex<HashMap<usize, Slot>>,
    later: Mutex<HashMap<LaterKey, LaterSlot>>,
    wanted: Wanted,
    /// For each first point whose state equals an earlier one's, that one.
    first_same: BTreeMap<CrashPoint, CrashPoint>,
    /// The later crash states each plan's case materialised.
    later_states: Mutex<BTreeMap<CrashPlan, Vec<LaterState>>>,
    resumes: std::sync::atomic::AtomicUsize,
    recorded_later: std::sync::atomic::AtomicUsize,
    /// The cases that see what another sees.
    same: SameCases,
}

impl<'r> Replayer<'r> {
    /// Replays `recording`, whose states are in `store`, for the cases of
    /// `plans`: their later crash points are recorded once per start state
    /// (see [`super::later`]).
    pub fn new(store: &'r Store, recording: &'r Recording, plans: &[CrashPlan]) -> Replayer<'r> {
        Replayer {
            store,
            recording,
            memo: Mutex::new(HashMap::new()),
            probes: Mutex::new(HashMap::new()),
            later: Mutex::new(HashMap::new()),
            wanted: Wanted::of(plans, recording),
            first_same: recording.same_as(),
            later_states: Mutex::new(BTreeMap::new()),
            resumes: Default::default(),
            recorded_later: Default::default(),
            same: SameCases::of(recording, plans),
        }
    }

    /// Runs actually started so far (distinct resumes, the recorded resume
    /// runs of later crashes included).
    pub fn runs_made(&self) -> usize {
        self.resumes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Later crash points (second crash or after) whose states were
    /// recorded so far, over every recorded resume run.
    pub fn later_points(&self) -> usize {
        self.recorded_later
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The later crash states each plan's case materialised from recorded
    /// resume runs, in crash order (plans without any are left out).
    pub fn later_states(&self) -> BTreeMap<CrashPlan, Vec<LaterState>> {
        self.later_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The runs of one case of `plan` in `case_dir`.
    fn new_case<'a>(&'a self, plan: &'a CrashPlan, case_dir: &'a Path) -> ReplayCase<'a> {
        ReplayCase {
            r: self,
            plan,
            case_dir,
            known: None,
            first: None,
            steps: Vec::new(),
            names: Vec::new(),
        }
    }

    fn slot(&self, key: MemoKey) -> Slot {
        let mut m = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(m.entry(key).or_default())
    }

    fn later_slot(&self, key: LaterKey) -> LaterSlot {
        let mut m = self.later.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(m.entry(key).or_default())
    }
}

impl Runs for Replayer<'_> {
    fn same_case(&self, plan: &CrashPlan) -> Option<SeenSlot> {
        self.same.take(self.recording, plan)
    }

    fn case<'a>(&'a self, plan: &'a CrashPlan, case_dir: &'a Path) -> Box<dyn CaseRuns + 'a> {
        Box::new(self.new_case(plan, case_dir))
    }

    fn probe<'a>(&'a self, case_dir: &'a Path) -> Box<dyn CaseRuns + 'a> {
        Box::new(ProbeCase {
            case: self.new_case(&NO_CRASH, case_dir),
        })
    }
}

/// The plan of a probe's runs: no crash point.
static NO_CRASH: CrashPlan = CrashPlan { points: Vec::new() };

/// The runs of a misuse probe: its uninterrupted first run from a fresh
/// sandbox is made once per layout (and length of case directory) and put
/// in place for the other probes and variants; the run given a bad resume
/// path, after the probe damaged the tree, is always made.
struct ProbeCase<'a> {
    /// Its runs' mechanics (putting a state in place, making a run).
    case: ReplayCase<'a>,
}

impl CaseRuns for ProbeCase<'_> {
    fn run(
        &mut self,
        target: &Target,
        run: usize,
        sandbox: &Sandbox,
        files: &HarnessFiles,
        req: &RunRequest<'_>,
    ) -> Result<RunResult, RunnerError> {
        if run != 1 || req.crash.is_some() || req.resume.is_some() {
            return runner::run(&target.subject, req);
        }
        // Every probe starts from a fresh sandbox of the layout, the same
        // tree but for its directories' times. Absolute paths in what the
        // run leaves are rewritten byte for byte when it is put in place:
        // only under a case directory as long.
        let case = &self.case;
        let key = case.case_dir.as_os_str().len();
        let slot = {
            let mut m = case.r.probes.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(m.entry(key).or_default())
        };
        let mut made_here = false;
        let memo = slot.get_or_init(|| {
            made_here = true;
            case.make(target, sandbox, files, req)
                .map_err(|e| e.to_string())
        });
        match memo {
            Ok(m) if made_here => Ok(m.result.clone()),
            Ok(m) => case.replay(m, sandbox, files),
            Err(e) if made_here => Err(RunnerError::Trace(e.clone())),
            // It failed to start in another probe: start it here.
            Err(_) => runner::run(&target.subject, req),
        }
    }
}

struct ReplayCase<'a> {
    r: &'a Replayer<'a>,
    plan: &'a CrashPlan,
    case_dir: &'a Path,
    /// The state the sandbox is in now, when known.
    known: Option<StateId>,
    /// The state of the case's first crash, when it was recorded.
    first: Option<StateId>,
    /// The later crashes it went through from recorded resume runs since
    /// (each run's slot, and the point it crashed at there).
    steps: Vec<(LaterSlot, CrashPoint)>,
    /// Its crash states so far, named (see [`LaterState::from`]).
    names: Vec<CrashPoint>,
}

fn store_err(e: StoreError) -> RunnerError {
    RunnerError::Spawn {
        program: "the state store".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn relocate_str(reloc: Option<&Relocation>, s: &str) -> String {
    match reloc.and_then(|r| r.apply(s.as_bytes())) {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => s.to_string(),
    }
}

impl ReplayCase<'_> {
    fn load(&self, id: &StateId) -> Result<Manifest, RunnerError> {
        let text = self.r.store.get(id).map_err(store_err)?;
        Manifest::from_text(&String::from_utf8_lossy(&text)).map_err(store_err)
    }

    /// Puts state `id`, recorded under `from`, in place of the sandbox.
    fn put_in_place(
        &self,
        id: &StateId,
        from: &Path,
        sandbox: &Sandbox,
        files: &HarnessFiles,
    ) -> Result<Option<Relocation>, RunnerError> {
        let m = self.load(id)?;
        let io = |e: std::io::Error| RunnerError::Spawn {
            program: "sandbox".into(),
            source: e,
        };
        clear_for(&m, sandbox.root()).map_err(io)?;
        let _ = std::fs::remove_file(&files.events);
        let reloc = Relocation::between(from, self.case_dir);
        materialise(
            self.r.store,
            &m,
            sandbox.root(),
            Some(&files.events),
            reloc.as_ref(),
        )
        .map_err(store_err)?;
        Ok(reloc)
    }

    /// Makes the run for real and remembers what it left.
    fn make(
        &self,
        target: &Target,
        sandbox: &Sandbox,
        files: &HarnessFiles,
        req: &RunRequest<'_>,
    ) -> Result<Memo, RunnerError> {
        self.r
            .resumes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = runner::run(&target.subject, req)?;
        let mut cap = Capturer::new(self.r.store, sandbox.root(), Some(&files.events));
        cap.scan_all().map_err(store_err)?;
        let after = cap.capture().map_err(store_err)?;
        Ok(Memo {
            result,
            after,
            state_file: std::fs::read(&files.state).ok(),
            case_dir: self.case_dir.to_path_buf(),
        })
    }
}

impl ReplayCase<'_> {
    /// When run `run`, from the known state `start`, is to crash at a later
    /// point wanted from there (`crash`): that point, the case's crash
    /// states so far (the last one `start`), and every point wanted from
    /// there by the plans that went through the same states.
    fn wanted_later(
        &self,
        target: &Target,
        run: usize,
        start: StateId,
        crash: Option<CrashPoint>,
    ) -> Option<(CrashPoint, Lineage, Vec<CrashPoint>)> {
        let point = crash.filter(|c| run >= 2 && later::recordable(target, *c))?;
        let first = self.first?;
        let mut steps: Vec<Step<'_>> = Vec::new();
        let mut lineage: Lineage = vec![first];
        for (slot, p) in &self.steps {
            let Some(Ok(r)) = slot.get() else {
                return None;
            };
            lineage.push(r.points.get(p)?.state);
            steps.push((r, *p));
        }
        if lineage.last() != Some(&start) {
            return None;
        }
        let wanted = self.r.wanted.from(run, &first, &steps);
        wanted.contains(&point).then_some((point, lineage, wanted))
    }

    /// The result of a run killed at a recorded point: its state was put in
    /// place (relocated by `reloc`); nothing was watched here.
    fn crashed(point: &PointRecord, reloc: Option<&Relocation>) -> RunResult {
        RunResult {
            exit: Exit::Crashed,
            stderr_tail: String::new(),
            duration: Duration::ZERO,
            census: Vec::new(),
            // Nothing was watched here: the recording run was.
            traced: false,
            removed: Vec::new(),
            power: Vec::new(),
            outside: point
                .outside
                .iter()
                .map(|p| PathBuf::from(relocate_str(reloc, &p.to_string_lossy())))
                .collect(),
        }
    }

    /// Puts what the remembered run `memo` left in place (the sandbox, the
    /// events, the state file) and gives how it ended, relocated.
    fn replay(
        &self,
        memo: &Memo,
        sandbox: &Sandbox,
        files: &HarnessFiles,
    ) -> Result<RunResult, RunnerError> {
        let reloc = self.put_in_place(&memo.after, &memo.case_dir, sandbox, files)?;
        let _ = std::fs::remove_file(&files.state);
        if let Some(bytes) = &memo.state_file {
            let bytes = reloc
                .as_ref()
                .and_then(|r| r.apply(bytes))
                .unwrap_or_else(|| bytes.clone());
            std::fs::write(&files.state, bytes).map_err(|e| RunnerError::Spawn {
                program: "state file".into(),
                source: e,
            })?;
        }
        let mut result = memo.result.clone();
        result.stderr_tail = relocate_str(reloc.as_ref(), &result.stderr_tail);
        let moved = |v: &[PathBuf]| -> Vec<PathBuf> {
            v.iter()
                .map(|p| PathBuf::from(relocate_str(reloc.as_ref(), &p.to_string_lossy())))
                .collect()
        };
        result.outside = moved(&result.outside);
        result.removed = moved(&result.removed);
        Ok(result)
    }

    /// Run `run`, from the known state `start`, killed at the later crash
    /// point `point`: from the resume run recorded once from `start` (made
    /// here when no case made it yet). `None`: that recording failed in
    /// another case, the run is to be made as without one.
    fn later(
        &mut self,
        at: RunAt<'_, '_>,
        lineage: Lineage,
        point: CrashPoint,
        wanted: Vec<CrashPoint>,
    ) -> Result<Option<RunResult>, RunnerError> {
        let RunAt {
            run,
            sandbox,
            files,
            req,
            ..
        } = at;
        let slot = self.r.later_slot((lineage, req.resume.is_some()));
        let mut made_here = false;
        let got = slot.get_or_init(|| {
            made_here = true;
            self.r
                .resumes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let rec = later::record_resume(self.r.store, at, point, &wanted, self.case_dir);
            if let Ok(r) = &rec {
                self.r
                    .recorded_later
                    .fetch_add(r.points.len(), std::sync::atomic::Ordering::Relaxed);
            }
            rec.map_err(|e| e.to_string())
        });
        let rec = match got {
            Ok(r) => r,
            Err(e) if made_here => return Err(RunnerError::Trace(e.clone())),
            Err(_) => return Ok(None),
        };
        match rec.points.get(&point) {
            Some(p) => {
                let reloc = self.put_in_place(&p.state, &rec.end.case_dir, sandbox, files)?;
                let _ = std::fs::remove_file(&files.state);
                self.known = Some(p.state);
                let same_as = later::same_in(rec, point);
                let state = LaterState {
                    crash: run,
                    point,
                    from: self.names.clone(),
                    same_as,
                };
                self.names.push(same_as.unwrap_or(point));
                self.r
                    .later_states
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(self.plan.clone())
                    .or_default()
                    .push(state);
                let result = Self::crashed(p, reloc.as_ref());
                self.steps.push((Arc::clone(&slot), point));
                Ok(Some(result))
            }
            // The run ended before it got there: as a killed run would.
            None => {
                self.known = Some(rec.end.after);
                if made_here {
                    Ok(Some(rec.end.result.clone()))
                } else {
                    self.replay(&rec.end, sandbox, files).map(Some)
                }
            }
        }
    }
}

impl CaseRuns for ReplayCase<'_> {
    fn run(
        &mut self,
        target: &Target,
        run: usize,
        sandbox: &Sandbox,
        files: &HarnessFiles,
        req: &RunRequest<'_>,
    ) -> Result<RunResult, RunnerError> {
        let rec = self.r.recording;
        // A recorded crash point: its state stands for the killed run.
        let recorded = (run == 1)
            .then(|| req.crash.and_then(|c| rec.points.get(&c)))
            .flatten();
        if let Some(point) = recorded.filter(|_| !self.plan.points.is_empty()) {
            let reloc = self.put_in_place(&point.state, &rec.case_dir, sandbox, files)?;
            self.known = Some(point.state);
            self.first = Some(point.state);
            self.steps.clear();
            self.names = vec![*self.r.first_same.get(&point.point).unwrap_or(&point.point)];
            let mut result = Self::crashed(point, reloc.as_ref());
            // Under power loss: the operations before the point, from
            // which the case builds its disk states.
            if let Some(ops) = rec.power_ops(point.point).filter(|_| req.power) {
                result.power = super::power::relocated(&ops, reloc.as_ref());
            }
            return Ok(result);
        }
        let Some(start) = self.known else {
            return runner::run(&target.subject, req);
        };
        // A later crash point wanted from this start state: from the resume
        // run recorded once from there.
        if let Some((point, lineage, wanted)) = self.wanted_later(target, run, start, req.crash) {
            let at = RunAt {
                target,
                run,
                sandbox,
                files,
                req,
            };
            if let Some(result) = self.later(at, lineage, point, wanted)? {
                return Ok(result);
            }
        }
        // Any other run: the case's history of recorded crashes ends here.
        self.first = None;
        self.steps.clear();
        let slot = self.r.slot((start, run, req.crash, req.resume.is_some()));
        let mut made_here = false;
        let memo = slot.get_or_init(|| {
            made_here = true;
            self.make(target, sandbox, files, req)
                .map_err(|e| e.to_string())
        });
        let memo = match memo {
            Ok(m) => m,
            Err(e) if made_here => {
                return Err(RunnerError::Trace(e.clone()));
            }
            // The run failed to start in another case: make it here.
            Err(_) => {
                self.known = None;
                return runner::run(&target.subject, req);
            }
        };
        self.known = Some(memo.after);
        if made_here {
            return Ok(memo.result.clone());
        }
        self.replay(memo, sandbox, files)
    }

    fn state_installed(&mut self, id: StateId) {
        self.known = Some(id);
        // Not a recorded crash state: no recorded resume run starts here.
        self.first = None;
        self.steps.clear();
    }
}

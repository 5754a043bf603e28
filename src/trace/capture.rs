//! Pauses for capture: at the entry of chosen counted calls the tracer holds
//! the calling task stopped (every earlier call done, this one not) and
//! hands the census so far to a sink, which captures the crash state there;
//! then the run goes on.
//!
//! Only the calling task is held: in a subject with several threads or
//! processes making file-mutating calls at the same moment, another task
//! may still be inside a call that was restarted before this stop. Such
//! calls are numbered differently from one run to the next anyway (see the
//! module's limits).

/// What a sink is given at a pause.
#[derive(Debug, Clone, Copy)]
pub struct Pause<'a> {
    /// The number of the call the task is held at.
    pub index: u64,
    /// The census so far (its last entry is that call).
    pub calls: &'a [super::CallRecord],
    /// The paths outside the sandbox mutated so far (that call's included).
    pub outside: &'a [std::path::PathBuf],
}

/// What is called at each pause, on the tracer thread.
pub type PauseSink<'a> = dyn FnMut(&Pause<'_>) + Send + 'a;

/// Where a run pauses.
///
/// ```
/// use crashpoint::trace::PauseAt;
/// assert_eq!(PauseAt::from(vec![3, 1]), PauseAt::Calls(vec![3, 1]));
/// assert!(PauseAt::Every.includes(7));
/// assert!(!PauseAt::Calls(vec![3]).includes(7));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseAt {
    /// At the entry of the counted calls with these numbers.
    Calls(Vec<u64>),
    /// At the entry of every counted call (a recording made as the census
    /// is taken: which points will be wanted is not known yet).
    Every,
}

impl PauseAt {
    /// Does the run pause at call `index`?
    pub fn includes(&self, index: u64) -> bool {
        match self {
            PauseAt::Calls(at) => at.contains(&index),
            PauseAt::Every => true,
        }
    }
}

impl From<Vec<u64>> for PauseAt {
    fn from(at: Vec<u64>) -> PauseAt {
        PauseAt::Calls(at)
    }
}

/// The pause points of one run, in increasing order, and where they go.
pub(super) struct Pauses<'a> {
    /// `None`: every counted call.
    at: Option<Vec<u64>>,
    next: usize,
    sink: Option<&'a mut PauseSink<'a>>,
}

// The sink is only ever called from the tracer thread.

impl<'a> Pauses<'a> {
    /// Pauses at `at` (calls in any order, duplicates ignored), handing
    /// them to `sink`.
    pub(super) fn new(at: PauseAt, sink: Option<&'a mut PauseSink<'a>>) -> Pauses<'a> {
        let at = match at {
            PauseAt::Calls(mut at) => {
                at.sort_unstable();
                at.dedup();
                Some(at)
            }
            PauseAt::Every => None,
        };
        Pauses { at, next: 0, sink }
    }

    /// No pauses.
    pub(super) fn none() -> Pauses<'a> {
        Pauses::new(PauseAt::Calls(Vec::new()), None)
    }

    /// Called at the entry of counted call `index` (the last of `calls`),
    /// while its task is stopped: hands it to the sink if it is a pause point.
    pub(super) fn at_call(
        &mut self,
        index: u64,
        calls: &[super::CallRecord],
        outside: &[std::path::PathBuf],
    ) {
        let here = match &self.at {
            None => true,
            Some(at) => {
                while at.get(self.next).is_some_and(|&p| p < index) {
                    self.next += 1;
                }
                at.get(self.next) == Some(&index)
            }
        };
        if here {
            self.next += 1;
            if let Some(sink) = self.sink.as_mut() {
                sink(&Pause {
                    index,
                    calls,
                    outside,
                });
            }
        }
    }
}

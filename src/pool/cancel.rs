//! The cancellation token, and the interrupt handler that cancels the
//! harness's token on SIGINT, SIGTERM or SIGHUP.
//!
//! A [`Cancel`] is passed down from the command line to campaigns, the zoo
//! hunt and their worker pools instead of being read from globals: a
//! library caller makes its own (one that is never cancelled, or that it
//! cancels itself). The only process-wide stop state left is the live-run
//! registry's in `sys` (no run starts once [`crate::sys::stop_all`] has
//! been called), because a signal must reach every running subject
//! whichever token started it.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

/// Asks work to stop: cheap to clone, every clone sees the same state.
/// Workers finish the item they hold and take no new one.
///
/// ```
/// use crashpoint::pool::Cancel;
/// let c = Cancel::new();
/// let seen_by_a_worker = c.clone();
/// assert!(!seen_by_a_worker.is_cancelled());
/// assert!(c.cancel_by(15), "the first signal");
/// assert!(seen_by_a_worker.is_cancelled());
/// assert_eq!(seen_by_a_worker.signal(), Some(15));
/// assert!(!c.cancel_by(2), "a second signal does not replace the first");
/// assert_eq!(c.signal(), Some(15));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<State>);

#[derive(Debug, Default)]
struct State {
    cancelled: AtomicBool,
    /// The signal that cancelled it (0: none).
    signal: AtomicI32,
}

impl Cancel {
    /// A token nobody has cancelled yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Cancels, without a signal.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
    }

    /// Cancels because of signal `sig`; true when it is the first signal
    /// (the one [`Cancel::signal`] reports from then on).
    pub fn cancel_by(&self, sig: i32) -> bool {
        let first = self
            .0
            .signal
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        self.cancel();
        first
    }

    /// Has it been cancelled?
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// The signal (SIGINT, SIGTERM, SIGHUP) that cancelled it, if a signal did.
    pub fn signal(&self) -> Option<i32> {
        match self.0.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

/// Makes this process the harness and returns the token its termination
/// signals cancel: a child subreaper (orphans of subjects come back to it
/// to be killed and reaped), and on SIGINT, SIGTERM or SIGHUP the token is
/// cancelled and every live run killed, so that campaigns return the cases
/// that finished and the command line can print them, remove its workspace
/// and exit `128 + signal`. A second signal does not wait for that: every
/// subject and descendant is killed and the process exits at once (the
/// next run removes the workspace left behind).
///
/// Call it first thing in `main`, before any other thread starts.
pub fn install_interrupt_handler() -> Cancel {
    crate::sys::become_subreaper();
    let token = Cancel::new();
    let handler_token = token.clone();
    let installed = crate::sys::on_termination_signals(move |sig| {
        // The token first: a worker whose run the kill below ends then
        // knows its result means nothing.
        let first = handler_token.cancel_by(sig);
        crate::sys::stop_all();
        if first {
            eprintln!(
                "crashpoint: {}: stopping every run, removing the sandboxes (again to quit at once)",
                signal_name(sig)
            );
        } else {
            crate::sys::kill_descendants();
            std::process::exit(128 + sig);
        }
    });
    if let Err(e) = installed {
        eprintln!("warning: cannot handle SIGINT/SIGTERM ({e}); an interrupt leaves sandboxes behind until the next run");
    }
    token
}

/// `SIGINT` for 2, and so on.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

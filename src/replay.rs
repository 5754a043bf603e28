//! Replay commands: the one shell line that reproduces a case, with the
//! environment that selected what ran (`PYTHONPATH` picks a framework
//! version, `VIRTUAL_ENV` an interpreter), so that a pasted replay tests the
//! same thing; and the template every case's replay of one report is made
//! from ([`ReplayCommand`]), which reports keep once.
//!
//! ```
//! use crashpoint::replay::Replay;
//! let r = Replay::new(["crashpoint", "certify", "--", "python3", "my trainer.py"])
//!     .with_env(vec![("PYTHONPATH".into(), "/opt/pl 2.1".into())]);
//! assert_eq!(r.to_shell(), "env 'PYTHONPATH=/opt/pl 2.1' crashpoint certify -- python3 'my trainer.py'");
//! ```

use serde::{Deserialize, Serialize};

/// Variables recorded (when set) for every `certify` replay.
pub const RECORDED_ENV: [&str; 3] = ["PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH"];

/// One replay command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Variables set for the command, in order.
    pub env: Vec<(String, String)>,
    /// The command's words, unquoted.
    pub words: Vec<String>,
}

impl Replay {
    /// A replay of `words`, with no environment.
    pub fn new<I, S>(words: I) -> Replay
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Replay {
            env: Vec::new(),
            words: words.into_iter().map(Into::into).collect(),
        }
    }

    /// The same command run with `env` set.
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Replay {
        self.env = env;
        self
    }

    /// The shell line: `env NAME=value ... word ...`, every word quoted
    /// for a POSIX shell.
    pub fn to_shell(&self) -> String {
        let cmd = shell_join(&self.words);
        if self.env.is_empty() {
            return cmd;
        }
        let vars: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("env {} {cmd}", shell_join(vars))
    }
}

/// How the replay command of every case of one report is written: the
/// environment, `head`, the layout flag and the layout, `--crash` and the
/// plan, then `tail` (the run's other flags, and for `certify` a `--` and
/// the subject's command).
///
/// ```
/// use crashpoint::replay::ReplayCommand;
/// let r = ReplayCommand::new(&["crashpoint", "certify"], "--layouts", &["--", "python3", "my trainer.py"])
///     .with_env(vec![("PYTHONPATH".into(), "/opt/pl 2.1".into())]);
/// assert_eq!(r.command("relative", "syscall:9"),
///     "env 'PYTHONPATH=/opt/pl 2.1' crashpoint certify --layouts relative --crash syscall:9 -- python3 'my trainer.py'");
/// assert_eq!(r.template(),
///     "env 'PYTHONPATH=/opt/pl 2.1' crashpoint certify --layouts <layout> --crash <point> -- python3 'my trainer.py'");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplayCommand {
    /// Variables set for the command, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
    /// Program and flags before the layout, unquoted.
    pub head: Vec<String>,
    /// `--layout` (run) or `--layouts` (certify).
    pub layout_flag: String,
    /// What follows the plan, unquoted (may be empty).
    #[serde(default)]
    pub tail: Vec<String>,
}

impl ReplayCommand {
    /// From unquoted words, with no environment.
    pub fn new<S: AsRef<str>>(head: &[S], layout_flag: &str, tail: &[S]) -> ReplayCommand {
        let words = |w: &[S]| w.iter().map(|s| s.as_ref().to_string()).collect();
        ReplayCommand {
            env: Vec::new(),
            head: words(head),
            layout_flag: layout_flag.into(),
            tail: words(tail),
        }
    }

    /// The same template with `env` set for every command.
    pub fn with_env(mut self, env: Vec<(String, String)>) -> ReplayCommand {
        self.env = env;
        self
    }

    /// The command that replays `plan` (`none` for no crash) in `layout`.
    pub fn command(&self, layout: &str, plan: &(impl std::fmt::Display + ?Sized)) -> String {
        let mut words = self.head.clone();
        words.extend([
            self.layout_flag.clone(),
            layout.to_string(),
            "--crash".into(),
            plan.to_string(),
        ]);
        words.extend(self.tail.iter().cloned());
        Replay::new(words).with_env(self.env.clone()).to_shell()
    }

    /// The command with `<layout>` and `<point>` in place of the two, as
    /// the failure list shows it once.
    pub fn template(&self) -> String {
        let head = Replay::new(self.head.clone())
            .with_env(self.env.clone())
            .to_shell();
        let mut s = format!("{head} {} <layout> --crash <point>", self.layout_flag);
        if !self.tail.is_empty() {
            s.push(' ');
            s.push_str(&shell_join(&self.tail));
        }
        s
    }
}

/// The environment a replay records: [`RECORDED_ENV`] and `extra` (the
/// names given with `--env`), each when `get` finds it set, in that order
/// and without repeats. `Err` names an `extra` variable that is not set.
pub fn recorded_env(
    extra: &[String],
    get: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for name in RECORDED_ENV {
        if let Some(v) = get(name) {
            out.push((name.to_string(), v));
        }
    }
    for name in extra {
        if out.iter().any(|(k, _)| k == name) {
            continue;
        }
        match get(name) {
            Some(v) => out.push((name.clone(), v)),
            None => {
                return Err(format!(
                    "--env {name}: {name} is not set in this environment"
                ))
            }
        }
    }
    Ok(out)
}

/// Quotes words for a POSIX shell, so a replay command pastes as it is.
///
/// ```
/// use crashpoint::replay::shell_join;
/// assert_eq!(shell_join(["python3", "my trainer.py", "it's"]), r"python3 'my trainer.py' 'it'\''s'");
/// ```
pub fn shell_join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    words
        .into_iter()
        .map(|w| {
            let w = w.as_ref();
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                w.to_string()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_recorded_when_set_and_extra_names_must_be_set() {
        let env = |k: &str| match k {
            "PYTHONPATH" => Some("/x".to_string()),
            "MY_FLAG" => Some("it's".to_string()),
            _ => None,
        };
        let got = recorded_env(&["MY_FLAG".into(), "PYTHONPATH".into()], env).unwrap();
        assert_eq!(
            got,
            [
                ("PYTHONPATH".to_string(), "/x".to_string()),
                ("MY_FLAG".to_string(), "it's".to_string())
            ]
        );
        let r = Replay::new(["crashpoint", "certify"]).with_env(got);
        assert_eq!(
            r.to_shell(),
            r"env PYTHONPATH=/x 'MY_FLAG=it'\''s' crashpoint certify"
        );
        assert!(recorded_env(&["NOPE".into()], env)
            .unwrap_err()
            .contains("NOPE is not set"));
        assert_eq!(Replay::new(["a b"]).to_shell(), "'a b'");
    }
}

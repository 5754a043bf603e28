//! Replay commands: the one shell line that reproduces a case, with the
//! environment that selected what ran (`PYTHONPATH` picks a framework
//! version, `VIRTUAL_ENV` an interpreter), so that a pasted replay tests the
//! same thing.
//!
//! ```
//! use crashpoint::replay::Replay;
//! let r = Replay::new(["crashpoint", "certify", "--", "python3", "my trainer.py"])
//!     .with_env(vec![("PYTHONPATH".into(), "/opt/pl 2.1".into())]);
//! assert_eq!(r.to_shell(), "env 'PYTHONPATH=/opt/pl 2.1' crashpoint certify -- python3 'my trainer.py'");
//! ```

use crate::report::shell_join;

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

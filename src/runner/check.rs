//! Refusing a program that cannot be started, with a message of its own.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{RunnerError, Subject};

/// Refuses a program that cannot be started, with a specific message: not
/// found, a directory, not executable, or a script whose `#!` interpreter
/// does not exist. A program without a `/` is looked up on `PATH`; one with
/// a `/` relative to `cwd`.
pub fn check_program(subject: &Subject, cwd: &Path) -> Result<(), RunnerError> {
    use std::os::unix::fs::PermissionsExt;
    let name = subject.display_program();
    let prog = Path::new(&subject.program);
    if subject.program.is_empty() {
        return Err(RunnerError::NotFound("(an empty command)".into()));
    }
    let on_path = !subject.program.as_encoded_bytes().contains(&b'/');
    let candidates: Vec<PathBuf> = if on_path {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(prog)).collect())
            .unwrap_or_default()
    } else {
        vec![cwd.join(prog)]
    };
    let mut seen: Option<RunnerError> = None;
    for c in candidates {
        let Ok(m) = std::fs::metadata(&c) else {
            continue;
        };
        let err = if m.is_dir() {
            RunnerError::IsDirectory(name.clone())
        } else if m.permissions().mode() & 0o111 == 0 {
            RunnerError::NotExecutable(name.clone())
        } else {
            return match missing_interpreter(&c) {
                Some(interpreter) => Err(RunnerError::BadInterpreter {
                    program: name,
                    interpreter,
                }),
                None => Ok(()),
            };
        };
        // As the shell does: a later directory of PATH may still hold it.
        seen.get_or_insert(err);
    }
    Err(seen.unwrap_or_else(|| {
        RunnerError::NotFound(if on_path {
            format!("{name} (not in any directory of PATH)")
        } else {
            format!("{name} (no such file)")
        })
    }))
}

/// The interpreter named on the `#!` line of `file`, when it is an absolute
/// path that does not exist.
fn missing_interpreter(file: &Path) -> Option<String> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(file)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let text = String::from_utf8_lossy(line);
    let interpreter = text.split_ascii_whitespace().next()?;
    (interpreter.starts_with('/') && !Path::new(interpreter).exists())
        .then(|| interpreter.to_string())
}

pub(super) fn spawn_error(subject: &Subject, e: std::io::Error) -> RunnerError {
    let program = subject.display_program();
    if e.kind() == std::io::ErrorKind::Interrupted && crate::sys::stopping() {
        return RunnerError::Interrupted;
    }
    match e.kind() {
        std::io::ErrorKind::NotFound => RunnerError::NotFound(program),
        std::io::ErrorKind::PermissionDenied => RunnerError::NotExecutable(program),
        _ if e.raw_os_error() == Some(libc::ENOEXEC) => RunnerError::NotAProgram(program),
        _ => RunnerError::Spawn { program, source: e },
    }
}

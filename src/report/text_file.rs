//! Text written straight to a file as it is made (the JUnit file, the HTML
//! page): a [`std::fmt::Write`] over a buffered file that keeps the first
//! I/O error for its caller to report.

use std::io::Write as _;

use super::ReportError;

/// Text going to a file: after the first error nothing more is written.
pub(super) struct TextFile {
    out: std::io::BufWriter<std::fs::File>,
    error: Option<std::io::Error>,
}

impl std::fmt::Write for TextFile {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(s.as_bytes()) {
                self.error = Some(e);
            }
        }
        Ok(())
    }
}

/// Creates `path` and hands `make` the text going to it; the first I/O
/// error, or `make`'s own, is the result.
pub(super) fn write_text(
    path: &std::path::Path,
    make: impl FnOnce(&mut TextFile) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let failed = |source| ReportError::Write {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(path).map_err(failed)?;
    let mut text = TextFile {
        out: std::io::BufWriter::new(file),
        error: None,
    };
    make(&mut text)?;
    if let Some(e) = text.error {
        return Err(failed(e));
    }
    text.out.flush().map_err(failed)
}

//! What every benchmark needs: the `crashpoint` binary beside it.

use std::path::PathBuf;

/// The `crashpoint` binary: benches run from `target/release/deps`, the
/// binary sits one level up.
pub fn exe() -> PathBuf {
    let mut p = std::env::current_exe().expect("bench executable");
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    p.join("crashpoint")
}

//! What this binary is: its version and the git commit it was built from
//! (stamped by `build.rs`), for `--version` and `dugong_build_info`.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The abbreviated git commit, or `unknown` when built without git.
pub const COMMIT: &str = env!("DUGONG_COMMIT");

/// What `dugong --version` prints after the name.
pub const LONG: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("DUGONG_COMMIT"), ")");

/// Sets `dugong_build_info{version, commit} 1` in the installed metrics recorder.
pub fn record_build_info() {
    dugong_server::metrics::process::record_build_info(VERSION, COMMIT);
}

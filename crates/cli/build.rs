//! Stamps the binary with the git commit it is built from, for `dugong
//! --version` and the `dugong_build_info` metric: `DUGONG_COMMIT` at compile
//! time.
//!
//! Where it comes from, in order: the `DUGONG_BUILD_COMMIT` environment
//! variable (image builds, whose context has no `.git`: `docker build
//! --build-arg DUGONG_COMMIT=…`); `git rev-parse` in the source tree; else
//! `unknown`, so a build from a source tarball without git still works.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DUGONG_BUILD_COMMIT");
    let commit = match std::env::var("DUGONG_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => from_git().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=DUGONG_COMMIT={commit}");
}

/// The abbreviated commit of HEAD, and rebuild triggers on the files that
/// move when HEAD does (a commit, a checkout), so the stamp never goes stale.
fn from_git() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?);
    let common_dir = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from).map(|d| absolute(&d));
    watch(&git_dir.join("HEAD"));
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        // A worktree's branches live in the repository's common directory.
        for dir in [Some(git_dir.clone()), common_dir.clone()].into_iter().flatten() {
            watch(&dir.join(&branch));
        }
    }
    if let Some(dir) = common_dir {
        watch(&dir.join("packed-refs"));
    }
    Some(commit)
}

/// `git ARGS` in this crate's directory; `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Reruns this script when `path` changes. Only existing files: cargo would
/// rerun every build for a missing one.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn absolute(dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
    }
}

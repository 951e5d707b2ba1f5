//! A POSIX behaviour battery: every operation an action does to its inputs and its own files,
//! checked against what a real filesystem (ext4, tmpfs) does. It runs on a directory holding the
//! [`fixture`] tree: a plain one written here (the control, which proves the battery right) or a
//! stage of the same tree. Each section works in its own top-level dir of the fixture, on staged
//! files and on files it creates, and records every deviation as a [`Failure`] naming the
//! operation, the path, and what was expected and got, so one run reports them all.

#![allow(dead_code, reason = "each test crate uses a different part of this support module")]

pub mod attrs;
pub mod files;
pub mod fixture;
pub mod links;
pub mod names;
pub mod readdir;
pub mod sandbox;
pub mod staged;

use std::fmt::{self, Debug};
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// One check that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What was done or checked, e.g. `rename dir over file`.
    pub op: String,
    /// The path, relative to the battery's root.
    pub path: String,
    /// What a real filesystem gives.
    pub expected: String,
    /// What this one gave.
    pub got: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: expected {}, got {}", self.op, self.path, self.expected, self.got)
    }
}

/// The checks of one battery run on one root: counts them and keeps the failures.
#[derive(Debug)]
pub struct Checks {
    root: PathBuf,
    passed: usize,
    failures: Vec<Failure>,
}

impl Checks {
    /// Checks of the tree at `root`.
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_owned(), passed: 0, failures: Vec::new() }
    }

    /// The battery's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `relative` under the root.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }

    fn record(&mut self, op: &str, path: &Path, expected: String, got: String) {
        let failure = Failure { op: op.to_owned(), path: self.relative(path), expected, got };
        self.failures.push(failure);
    }

    /// `got` must equal `expected`.
    pub fn eq<T: PartialEq + Debug>(&mut self, op: &str, path: &Path, expected: T, got: T) -> bool {
        if expected == got {
            self.passed += 1;
            return true;
        }
        self.record(op, path, format!("{expected:?}"), format!("{got:?}"));
        false
    }

    /// `holds` must be true; `expected` and `got` say what that means.
    pub fn that(&mut self, op: &str, path: &Path, holds: bool, expected: &str, got: impl Debug) -> bool {
        if holds {
            self.passed += 1;
            return true;
        }
        self.record(op, path, expected.to_owned(), format!("{got:?}"));
        false
    }

    /// `result` must be Ok; its value, or `None` after recording the error.
    pub fn ok<T>(&mut self, op: &str, path: &Path, result: io::Result<T>) -> Option<T> {
        match result {
            Ok(value) => {
                self.passed += 1;
                Some(value)
            }
            Err(error) => {
                self.record(op, path, "success".to_owned(), error_name(&error));
                None
            }
        }
    }

    /// `result` must fail with `errno`.
    pub fn fails<T: Debug>(&mut self, op: &str, path: &Path, result: io::Result<T>, errno: Errno) -> bool {
        let got = match result {
            Ok(value) => format!("success ({value:?})"),
            Err(error) if error.raw_os_error() == Some(errno as i32) => {
                self.passed += 1;
                return true;
            }
            Err(error) => error_name(&error),
        };
        self.record(op, path, format!("{errno}"), got);
        false
    }

    /// How many checks held.
    pub fn passed(&self) -> usize {
        self.passed
    }

    /// The checks that did not hold, in order.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// Panics unless the checks that failed are exactly `known` (by operation and path), listing
    /// every unexpected failure and every known one that no longer fails.
    pub fn assert_failures_are(&self, what: &str, known: &[(&str, &str)]) {
        let failed = |&(op, path): &(&str, &str)| self.failures.iter().any(|f| f.op == op && f.path == path);
        let unexpected: Vec<String> = self
            .failures
            .iter()
            .filter(|f| !known.contains(&(f.op.as_str(), f.path.as_str())))
            .map(|f| format!("  {f}\n"))
            .collect();
        let fixed: Vec<String> =
            known.iter().filter(|k| !failed(k)).map(|(op, path)| format!("  {op} {path}\n")).collect();
        assert!(
            unexpected.is_empty() && fixed.is_empty(),
            "{what}: {} of {} checks failed.\nUnexpected failures:\n{}Known deviations that now pass \
             (drop them from the list):\n{}",
            self.failures.len(),
            self.failures.len() + self.passed,
            unexpected.concat(),
            fixed.concat()
        );
    }

    /// Panics listing every failure, if any.
    pub fn assert_all_passed(&self, what: &str) {
        self.assert_failures_are(what, &[]);
    }
}

/// An I/O error as its errno name when it has one (`ENOENT`), else its text.
pub fn error_name(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => format!("{} ({error})", Errno::from_raw(code)),
        None => error.to_string(),
    }
}

/// Runs every section of the battery on `checks`' root, which holds a fresh [`fixture`] tree.
/// The staged-attribute section runs first, before anything changes them.
pub fn run(checks: &mut Checks) {
    staged::attributes(checks);
    files::write(checks);
    files::shared_mapping(checks);
    files::append(checks);
    files::truncate(checks);
    files::sparse(checks);
    names::rename(checks);
    names::unlink(checks);
    names::mkdir_rmdir(checks);
    links::symlink(checks);
    links::hardlink(checks);
    attrs::chmod(checks);
    attrs::utimens(checks);
    readdir::while_changing(checks);
}

/// This process's umask (read, not set: tests run in parallel threads of one process).
pub fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:")).expect("a Umask line");
    u32::from_str_radix(line.trim(), 8).unwrap()
}

/// `mode` as a new file or dir gets it under the umask, in octal.
pub fn created_mode(mode: u32) -> String {
    format!("{:o}", mode & !umask())
}

/// The permission bits of `path` in octal (not following a last symlink).
pub fn mode_of(path: &Path) -> Result<String, io::ErrorKind> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).map(|m| format!("{:o}", m.mode() & 0o7777)).map_err(|e| e.kind())
}

/// `(st_dev, st_ino)` of `path`, not following a last symlink.
pub fn identity(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()))
}

/// The content of `path` as text (lossy), for readable failures.
pub fn text(path: &Path) -> Result<String, io::ErrorKind> {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).map_err(|e| e.kind())
}

//! Opening the command's standard streams on the host, before the sandbox exists.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use rebox_runner_spec::{Spec, Stdio};

use crate::error::UsernsError;

/// The opened streams, kept open until the sandbox has started.
#[derive(Debug)]
pub(crate) struct Streams {
    pub fds: [Option<OwnedFd>; 3],
}

impl Streams {
    pub(crate) fn open(spec: &Spec) -> Result<Self, UsernsError> {
        let stdin = open_one(&spec.stdin, "stdin", false)?;
        let stdout = open_one(&spec.stdout, "stdout", true)?;
        let stderr = open_one(&spec.stderr, "stderr", true)?;
        Ok(Self { fds: [stdin, stdout, stderr] })
    }

    /// The command's stdin: the file opened for it, or the runner's own.
    pub(crate) fn stdin(&self) -> BorrowedFd<'_> {
        match &self.fds[0] {
            Some(fd) => fd.as_fd(),
            // SAFETY: descriptor 0 is the runner's stdin, never closed by this process; if it
            // isn't open at all, the calls made on it fail with EBADF.
            None => unsafe { BorrowedFd::borrow_raw(0) },
        }
    }

    /// The raw descriptors, for the plan.
    pub(crate) fn raw(&self) -> [Option<i32>; 3] {
        [0, 1, 2].map(|i| self.fds[i].as_ref().map(|fd| fd.as_raw_fd()))
    }
}

fn open_one(stdio: &Stdio, stream: &'static str, write: bool) -> Result<Option<OwnedFd>, UsernsError> {
    let path = match stdio {
        Stdio::Inherit => return Ok(None),
        Stdio::Null => std::path::Path::new("/dev/null"),
        Stdio::File(path) => path.as_path(),
    };
    let file = match write {
        true => OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(path),
        false => File::open(path),
    }
    .map_err(|source| UsernsError::Stream { stream, path: path.to_owned(), source })?;
    let fd = OwnedFd::from(file);
    // The command's dup2 onto 0..2 must not find its source already there.
    let fd = match fd.as_raw_fd() {
        0..=2 => {
            fd.try_clone().map_err(|source| UsernsError::Stream { stream, path: path.to_owned(), source })?
        }
        _ => fd,
    };
    Ok(Some(fd))
}

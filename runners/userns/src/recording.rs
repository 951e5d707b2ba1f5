//! A [`Sys`] that records the calls the setup makes against a simulated directory tree, for
//! unit tests of the step sequences.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CStr;

use nix::errno::Errno;

use crate::sys::{Fd, Follow, Sys};

/// Records every call as one line; paths below descriptors are shown as `fd<N>:path`.
#[derive(Debug, Default)]
pub(crate) struct RecordingSys {
    pub calls: RefCell<Vec<String>>,
    /// Paths (relative to the root descriptor) that exist, as directories or files.
    pub existing: RefCell<BTreeSet<String>>,
    /// What each descriptor refers to.
    paths: RefCell<BTreeMap<Fd, String>>,
    next_fd: RefCell<Fd>,
    /// Calls (by their recorded line prefix) that fail with the given errno.
    pub failing: RefCell<Vec<(String, Errno)>>,
}

impl RecordingSys {
    fn record(&self, line: String) -> Result<(), Errno> {
        let failure =
            self.failing.borrow().iter().find(|(prefix, _)| line.starts_with(prefix)).map(|(_, e)| *e);
        self.calls.borrow_mut().push(line);
        failure.map_or(Ok(()), Err)
    }

    fn fd(&self, path: String) -> Fd {
        let mut next = self.next_fd.borrow_mut();
        *next += 1;
        self.paths.borrow_mut().insert(*next + 100, path);
        *next + 100
    }

    fn path_of(&self, fd: Fd) -> String {
        self.paths.borrow().get(&fd).cloned().unwrap_or_else(|| format!("fd{fd}"))
    }

    fn join(&self, dirfd: Fd, name: &CStr) -> String {
        let base = self.path_of(dirfd);
        let name = name.to_str().unwrap();
        match (base.as_str(), name) {
            (base, ".") => base.to_owned(),
            ("", name) => name.to_owned(),
            (base, name) => format!("{base}/{name}"),
        }
    }

    /// The recorded lines.
    pub fn lines(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl Sys for RecordingSys {
    fn write_file(&self, path: &CStr, data: &[u8]) -> Result<(), Errno> {
        self.record(format!("write {} {:?}", path.to_str().unwrap(), String::from_utf8_lossy(data)))
    }
    fn make_rprivate(&self) -> Result<(), Errno> {
        self.record("make-rprivate".into())
    }
    fn clone_mount(&self, dirfd: Fd, path: &CStr, recursive: bool) -> Result<Fd, Errno> {
        let source =
            if dirfd == libc::AT_FDCWD { path.to_str().unwrap().to_owned() } else { self.join(dirfd, path) };
        self.record(format!("clone-mount {source} recursive={recursive}"))?;
        Ok(self.fd(format!("mount-of:{source}")))
    }
    fn set_mount_attrs(&self, mount: Fd, attrs: u64, recursive: bool) -> Result<(), Errno> {
        self.record(format!("set-attrs {} {attrs:#x} recursive={recursive}", self.path_of(mount)))
    }
    fn new_mount(&self, fstype: &CStr, options: &[(&CStr, Option<&CStr>)], attrs: u64) -> Result<Fd, Errno> {
        let options: Vec<String> = options
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{}={}", k.to_str().unwrap(), v.to_str().unwrap()),
                None => k.to_str().unwrap().to_owned(),
            })
            .collect();
        let fstype = fstype.to_str().unwrap();
        self.record(format!("new-mount {fstype} [{}] {attrs:#x}", options.join(",")))?;
        Ok(self.fd(format!("new:{fstype}")))
    }
    fn attach(&self, mount: Fd, target: Fd) -> Result<(), Errno> {
        let target = self.path_of(target);
        self.record(format!("attach {} -> {target}", self.path_of(mount)))?;
        // The mount's root is now reachable at the target.
        let source = self.path_of(mount);
        self.paths.borrow_mut().insert(mount, if source.starts_with("new:") { target } else { source });
        Ok(())
    }
    fn attach_at(&self, mount: Fd, path: &CStr) -> Result<(), Errno> {
        self.record(format!("attach {} -> host:{}", self.path_of(mount), path.to_str().unwrap()))?;
        // The root's descriptor: paths below it are the simulated tree.
        self.paths.borrow_mut().insert(mount, String::new());
        Ok(())
    }
    fn open_inside(&self, dirfd: Fd, path: &CStr, _follow: Follow) -> Result<Fd, Errno> {
        let full = self.join(dirfd, path);
        let is_root_or_mounted =
            full.is_empty() || !self.paths.borrow().get(&dirfd).is_some_and(String::is_empty);
        if !is_root_or_mounted && !self.existing.borrow().contains(&full) {
            return Err(Errno::ENOENT);
        }
        Ok(self.fd(full))
    }
    fn mkdir_at(&self, dirfd: Fd, name: &CStr, _mode: u32) -> Result<(), Errno> {
        let full = self.join(dirfd, name);
        self.record(format!("mkdir {full}"))?;
        self.existing.borrow_mut().insert(full);
        Ok(())
    }
    fn create_file_at(&self, dirfd: Fd, name: &CStr, _mode: u32) -> Result<(), Errno> {
        let full = self.join(dirfd, name);
        self.record(format!("create {full}"))?;
        self.existing.borrow_mut().insert(full);
        Ok(())
    }
    fn symlink_at(&self, target: &CStr, dirfd: Fd, name: &CStr) -> Result<(), Errno> {
        self.record(format!("symlink {} -> {}", self.join(dirfd, name), target.to_str().unwrap()))
    }
    fn close(&self, _fd: Fd) {}
    fn set_hostname(&self, name: &[u8]) -> Result<(), Errno> {
        self.record(format!("hostname {}", String::from_utf8_lossy(name)))
    }
    fn loopback_up(&self) -> Result<(), Errno> {
        self.record("loopback-up".into())
    }
    fn pivot_to(&self, dirfd: Fd) -> Result<(), Errno> {
        self.record(format!("pivot {:?}", self.path_of(dirfd)))
    }
    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        self.record(format!("chdir {}", path.to_str().unwrap()))
    }
    fn drop_bounding_cap(&self, cap: u32) -> Result<(), Errno> {
        self.record(format!("drop-bounding {cap}"))
    }
    fn clear_caps(&self) -> Result<(), Errno> {
        self.record("clear-caps".into())
    }
    fn set_no_new_privs(&self) -> Result<(), Errno> {
        self.record("no-new-privs".into())
    }
    fn install_seccomp(&self, program: &[libc::sock_filter]) -> Result<(), Errno> {
        self.record(format!("seccomp {} instructions", program.len()))
    }
}

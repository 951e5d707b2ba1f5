//! readdir while the directory changes. The listing is read with getdents64 into a small buffer,
//! so it takes many calls, and between calls entries are created and removed. POSIX leaves open
//! whether those show; it requires that every entry left alone shows exactly once, and that the
//! listing ends without error. A rewind then lists the directory as it is.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::Checks;
use super::fixture::{READDIR_KEPT, READDIR_VOLATILE};

/// Bytes per getdents64 call: a few dozen entries of the fixture's names.
const BUFFER: usize = 1024;

/// One getdents64 call; the names it returned (none at the end of the dir).
fn getdents(dir: &File) -> io::Result<Vec<String>> {
    let mut buffer = [0u8; BUFFER];
    // SAFETY: the buffer is valid for writes of its length, and the fd is an open directory that
    // outlives the call.
    let n =
        unsafe { libc::syscall(libc::SYS_getdents64, dir.as_raw_fd(), buffer.as_mut_ptr(), buffer.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut names = Vec::new();
    let mut at = 0;
    // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    while at < n as usize {
        let record = &buffer[at..];
        let length = u16::from_ne_bytes([record[16], record[17]]) as usize;
        let name = &record[19..length];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        names.push(String::from_utf8_lossy(name).into_owned());
        at += length;
    }
    Ok(names)
}

fn kept(n: usize) -> String {
    format!("keep-{n:03}-unchanged-while-listing")
}

fn volatile(n: usize) -> String {
    format!("volatile-{n:03}-removed-while-listing")
}

fn created(n: usize) -> String {
    format!("created-{n:03}-while-listing")
}

/// Lists `dir` through one descriptor, removing volatile entries and creating new ones after
/// each call; checks the listing, then rewinds and checks that it shows the dir as it is.
fn list_while_changing(c: &mut Checks, dir: &Path) {
    let Some(handle) = c.ok("open the dir", dir, File::open(dir)) else { return };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let (mut removed, mut made, mut calls) = (0, 0, 0);
    while let Some(names) = c.ok(&format!("getdents64 call {calls}"), dir, getdents(&handle)) {
        if names.is_empty() {
            break;
        }
        calls += 1;
        for name in names {
            *seen.entry(name).or_default() += 1;
        }
        // Remove some entries not yet listed and some already listed, in turn; add new ones.
        for _ in 0..8 {
            if removed < READDIR_VOLATILE {
                let n = if removed % 2 == 0 { READDIR_VOLATILE - 1 - removed / 2 } else { removed / 2 };
                let path = dir.join(volatile(n));
                c.ok("unlink while listing", &path, fs::remove_file(&path));
                removed += 1;
            }
        }
        for _ in 0..2 {
            let path = dir.join(created(made));
            c.ok("create while listing", &path, fs::write(&path, b"new"));
            made += 1;
        }
    }
    c.that("the listing took many getdents64 calls", dir, calls > 5, "more than 5", calls);
    let missing: Vec<String> = (0..READDIR_KEPT).map(kept).filter(|name| !seen.contains_key(name)).collect();
    c.that("every unchanged entry is listed", dir, missing.is_empty(), "none missing", &missing);
    let repeated: Vec<(&String, &usize)> =
        seen.iter().filter(|(name, count)| **count > 1 && name.starts_with("keep-")).collect();
    c.that("no unchanged entry is listed twice", dir, repeated.is_empty(), "none twice", &repeated);
    let strangers: Vec<&String> = seen
        .keys()
        .filter(|n| {
            !["keep-", "volatile-", "created-"].iter().any(|p| n.starts_with(p)) && *n != "." && *n != ".."
        })
        .collect();
    c.that("no entry that never existed is listed", dir, strangers.is_empty(), "none", &strangers);
    for dot in [".", ".."] {
        c.eq(&format!("'{dot}' is listed once"), dir, Some(&1), seen.get(dot));
    }

    // Rewind the same descriptor: the listing now is the dir as it is.
    // SAFETY: lseek on an open fd we own has no memory effects.
    let rewound = unsafe { libc::lseek(handle.as_raw_fd(), 0, libc::SEEK_SET) };
    c.that("rewind (lseek 0)", dir, rewound == 0, "0", rewound);
    let mut now = Vec::new();
    while let Some(names) = c.ok("getdents64 after rewind", dir, getdents(&handle)) {
        if names.is_empty() {
            break;
        }
        now.extend(names.into_iter().filter(|n| n != "." && n != ".."));
    }
    now.sort();
    let mut expected: Vec<String> = (0..READDIR_KEPT).map(kept).chain((0..made).map(created)).collect();
    expected.extend((0..READDIR_VOLATILE).map(volatile).filter(|name| dir.join(name).exists()));
    expected.sort();
    c.eq("the listing after a rewind is the dir as it is", dir, expected, now);
    c.eq("all volatile entries were removed", dir, READDIR_VOLATILE, removed);
}

/// The staged dir `l/` (all its entries staged) and a new dir filled with the same names.
pub fn while_changing(c: &mut Checks) {
    list_while_changing(c, &c.path("l"));
    let new = c.path("l-new");
    c.ok("mkdir", &new, fs::create_dir(&new));
    for name in (0..READDIR_KEPT).map(kept).chain((0..READDIR_VOLATILE).map(volatile)) {
        c.ok("create", &new.join(&name), fs::write(new.join(&name), name.as_bytes()));
    }
    list_while_changing(c, &new);
}

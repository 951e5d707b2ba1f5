//! File contents: create, write (in place and past the end), append, truncate (grow, shrink,
//! O_TRUNC, by path) and large sparse files, on staged files and new ones.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;

use super::{Checks, created_mode, identity, mode_of, text};

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// In-place writes to staged files change only that file, keep its identity and mode, move its
/// mtime to now, and are seen by a descriptor opened before them; new files are created with
/// their mode (under the umask), O_EXCL refuses an existing name, and a write past the end
/// leaves zeros between.
pub fn write(c: &mut Checks) {
    let (plain, dup) = (c.path("w/plain"), c.path("w/dup"));
    let before = c.ok("lstat", &plain, identity(&plain));
    let started = now();
    let written = OpenOptions::new().write(true).open(&plain).and_then(|f| f.write_all_at(b"HE", 0));
    if c.ok("open O_WRONLY + pwrite at 0", &plain, written).is_some() {
        c.eq("content after an in-place write", &plain, Ok("HEllo\n".into()), text(&plain));
        c.eq("identical staged file after writing its twin", &dup, Ok("hello\n".into()), text(&dup));
        c.eq("in-place write keeps (st_dev, st_ino)", &plain, before, identity(&plain).ok());
        c.eq("in-place write keeps the mode", &plain, Ok("644".into()), mode_of(&plain));
        let mtime = fs::metadata(&plain).map(|m| m.mtime()).unwrap_or(0);
        c.that("write sets mtime to now", &plain, mtime >= started - 1, &format!(">= {started}"), mtime);
    }
    for (name, mode) in [("w/exe", "755"), ("w/props", "640"), ("w/private-tool", "700")] {
        let path = c.path(name);
        let appended = OpenOptions::new().append(true).open(&path).and_then(|mut f| f.write_all(b"#"));
        c.ok("append", &path, appended);
        c.eq("a write keeps the staged mode", &path, Ok(mode.into()), mode_of(&path));
    }

    // A descriptor opened (read-only) before another one writes sees the write and the new size.
    let reader = c.path("w/reader");
    if let Some(early) = c.ok("open O_RDONLY", &reader, File::open(&reader)) {
        let written = OpenOptions::new().write(true).open(&reader).and_then(|f| f.write_all_at(b"R", 0));
        c.ok("pwrite through a second descriptor", &reader, written);
        let appended = OpenOptions::new().append(true).open(&reader).and_then(|mut f| f.write_all(b"more"));
        c.ok("append through a third descriptor", &reader, appended);
        let mut buf = [0u8; 16];
        let n = early.read_at(&mut buf, 0).unwrap_or(0);
        c.eq(
            "read through a descriptor opened before the writes",
            &reader,
            "Reader\nmore",
            &*String::from_utf8_lossy(&buf[..n]),
        );
        c.eq(
            "fstat size through the early descriptor",
            &reader,
            Some(11),
            early.metadata().ok().map(|m| m.len()),
        );
    }

    let new = c.path("w/new");
    let created = OpenOptions::new().write(true).create_new(true).mode(0o640).open(&new);
    if let Some(mut f) = c.ok("open O_CREAT|O_EXCL 0640", &new, created) {
        c.ok("write", &new, f.write_all(b"new\n"));
        c.eq("content", &new, Ok("new\n".into()), text(&new));
        c.eq("mode of a new file", &new, Ok(created_mode(0o640)), mode_of(&new));
        c.ok("pwrite past the end", &new, f.write_all_at(b"x", 10));
        c.eq("pwrite past the end leaves zeros", &new, Ok("new\n\0\0\0\0\0\0x".into()), text(&new));
    }
    let again = OpenOptions::new().write(true).create_new(true).open(&new);
    c.fails("O_CREAT|O_EXCL on a new file", &new, again, Errno::EEXIST);
    let dup_again = OpenOptions::new().write(true).create_new(true).open(&dup);
    c.fails("O_CREAT|O_EXCL on a staged file", &dup, dup_again, Errno::EEXIST);
    let opened = OpenOptions::new().write(true).create(true).truncate(false).open(&dup);
    c.ok("O_CREAT without O_EXCL on a staged file", &dup, opened);
    c.eq("O_CREAT keeps the content", &dup, Ok("hello\n".into()), text(&dup));
}

/// A MAP_SHARED mapping made through a read-only descriptor sees writes made afterwards through
/// another descriptor (one page cache per file), staged or new.
pub fn shared_mapping(c: &mut Checks) {
    for (name, start) in [("w/mapped", "mapped\n"), ("w/new-mapped", "new-mapped\n")] {
        let path = c.path(name);
        if !path.exists() {
            c.ok("create", &path, fs::write(&path, start));
        }
        let Some(file) = c.ok("open O_RDONLY", &path, File::open(&path)) else { continue };
        let len = start.len();
        // SAFETY: a new shared read-only mapping of the first `len` bytes of an open file of that
        // length; nothing else refers to that address range, and it is unmapped below.
        let map = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0)
        };
        if map == libc::MAP_FAILED {
            c.ok("mmap MAP_SHARED PROT_READ", &path, Err::<(), _>(std::io::Error::last_os_error()));
            continue;
        }
        let written = OpenOptions::new().write(true).open(&path).and_then(|f| f.write_all_at(b"M", 0));
        c.ok("pwrite through another descriptor", &path, written);
        // SAFETY: the mapping is `len` readable bytes, and the file was not shrunk below that.
        let seen = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(map.cast::<u8>(), len) })
            .into_owned();
        // SAFETY: unmaps exactly the mapping made above, which is not used after this.
        unsafe { libc::munmap(map, len) };
        let expected = format!("M{}", &start[1..]);
        c.eq("a shared mapping made before a write sees it", &path, expected, seen);
    }
}

/// O_APPEND writes land at the end whatever the offset, and appends through two descriptors
/// interleave.
pub fn append(c: &mut Checks) {
    for (name, start) in [("a/log", "line1\n"), ("a/new", "")] {
        let path = c.path(name);
        if name == "a/new" {
            c.ok("create", &path, fs::write(&path, b""));
        }
        let open = || OpenOptions::new().append(true).open(&path);
        let (Some(mut one), Some(mut two)) =
            (c.ok("open O_APPEND", &path, open()), c.ok("open O_APPEND", &path, open()))
        else {
            continue;
        };
        let result =
            one.write_all(b"x").and_then(|()| two.write_all(b"y")).and_then(|()| one.write_all(b"z"));
        c.ok("append through two descriptors", &path, result);
        c.eq("appends interleave at the end", &path, Ok(format!("{start}xyz")), text(&path));
    }
}

fn truncate_checks(c: &mut Checks, path: &Path, shrink_to: u64, content_after: &str) {
    let shrunk = OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(shrink_to));
    if c.ok("ftruncate (shrink)", path, shrunk).is_some() {
        c.eq("content after shrinking", path, Ok(content_after.to_owned()), text(path));
    }
    let grown = OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(shrink_to + 5));
    if c.ok("ftruncate (grow)", path, grown).is_some() {
        let expected = format!("{content_after}\0\0\0\0\0");
        c.eq("growing adds zeros", path, Ok(expected), text(path));
    }
    c.eq("truncate keeps the mode", path, Ok("644".into()), mode_of(path));
}

/// ftruncate shrinks and grows (zero-filled), O_TRUNC empties, truncate(2) works by path, and a
/// large grow stays sparse.
pub fn truncate(c: &mut Checks) {
    let new = c.path("t/new");
    c.ok("create", &new, fs::write(&new, b"0123456789"));
    truncate_checks(c, &c.path("t/shrink"), 4, "0123");
    truncate_checks(c, &new, 4, "0123");
    let grow = c.path("t/grow");
    let grown = OpenOptions::new().write(true).open(&grow).and_then(|f| f.set_len(8));
    c.ok("ftruncate (grow)", &grow, grown);
    c.eq("growing a staged file adds zeros", &grow, Ok("abc\0\0\0\0\0".into()), text(&grow));

    let otrunc = c.path("t/otrunc");
    let opened =
        OpenOptions::new().write(true).truncate(true).open(&otrunc).and_then(|mut f| f.write_all(b"x"));
    c.ok("open O_TRUNC + write", &otrunc, opened);
    c.eq("O_TRUNC empties a staged file", &otrunc, Ok("x".into()), text(&otrunc));

    let bypath = c.path("t/bypath");
    c.ok("truncate(2) by path", &bypath, nix::unistd::truncate(&bypath, 3).map_err(std::io::Error::from));
    c.eq("truncate(2) by path", &bypath, Ok("tru".into()), text(&bypath));
    let mib = 1 << 20;
    c.ok("truncate(2) to 1 MiB", &bypath, nix::unistd::truncate(&bypath, mib).map_err(std::io::Error::from));
    if let Some(m) = c.ok("stat", &bypath, fs::metadata(&bypath)) {
        c.eq("size after growing to 1 MiB", &bypath, mib as u64, m.len());
        c.that(
            "a grown file is sparse",
            &bypath,
            m.blocks() * 512 < mib as u64 / 2,
            "st_blocks*512 < 512 KiB",
            m.blocks(),
        );
    }
}

/// A write at 5 GiB makes a file of 5 GiB + 4 bytes that uses a few blocks, reads zeros in its
/// holes and keeps the bytes before them, staged or new.
pub fn sparse(c: &mut Checks) {
    const AT: u64 = 5 << 30;
    for (name, start) in [("z/staged", "sparse-start"), ("z/new", "")] {
        let path = c.path(name);
        let opened = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
        let Some(f) = c.ok("open O_RDWR|O_CREAT", &path, opened) else { continue };
        if c.ok("pwrite at 5 GiB", &path, f.write_all_at(b"tail", AT)).is_none() {
            continue;
        }
        let metadata = fs::metadata(&path);
        if let Some(m) = c.ok("stat", &path, metadata) {
            c.eq("size after writing at 5 GiB", &path, AT + 4, m.len());
            c.that(
                "a sparse file uses few blocks",
                &path,
                m.blocks() < 2048,
                "st_blocks < 2048 (1 MiB)",
                m.blocks(),
            );
        }
        let mut buf = vec![0xffu8; 4096];
        for offset in [1 << 30, AT - 4096] {
            let zeros = f.read_exact_at(&mut buf, offset).map(|()| buf.iter().all(|&b| b == 0));
            if let Some(zeros) = c.ok(&format!("pread 4 KiB at {offset}"), &path, zeros) {
                c.that(
                    "a hole reads as zeros",
                    &path,
                    zeros,
                    "4 KiB of zeros",
                    format!("non-zero at {offset}"),
                );
            }
        }
        let mut tail = [0u8; 4];
        c.ok("pread the tail", &path, f.read_exact_at(&mut tail, AT));
        c.eq("the bytes written at 5 GiB", &path, b"tail", &tail);
        let mut head = vec![0u8; start.len()];
        c.ok("pread the head", &path, f.read_exact_at(&mut head, 0));
        c.eq("the bytes before the hole", &path, start.as_bytes(), head.as_slice());
        // Don't leave 5 GiB files for the next section's listings or the upper dir's disk.
        c.ok("unlink the sparse file", &path, fs::remove_file(&path));
    }
}

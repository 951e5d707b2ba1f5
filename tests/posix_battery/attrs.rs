//! Attributes: chmod (files, executables, dirs, the sticky bit) and utimensat (exact seconds and
//! nanoseconds, UTIME_OMIT, UTIME_NOW, dirs, symlinks themselves), on staged entries and new ones.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::{Checks, fixture, mode_of, text};

fn set_mode(c: &mut Checks, path: &Path, mode: u32) {
    c.ok(&format!("chmod {mode:o}"), path, fs::set_permissions(path, fs::Permissions::from_mode(mode)));
    c.eq(&format!("mode after chmod {mode:o}"), path, Ok(format!("{mode:o}")), mode_of(path));
}

fn times(path: &Path) -> Option<((i64, i64), (i64, i64))> {
    fs::symlink_metadata(path).ok().map(|m| ((m.atime(), m.atime_nsec()), (m.mtime(), m.mtime_nsec())))
}

/// chmod sets exactly the bits asked, leaves the content and the mtime, and a later write keeps
/// the new mode; dirs too, with the sticky bit.
pub fn chmod(c: &mut Checks) {
    let (file, exe, dir) = (c.path("c/file"), c.path("c/exe"), c.path("c/dir"));
    set_mode(c, &file, 0o600);
    c.eq("chmod keeps the content", &file, Ok("c\n".into()), text(&file));
    let mtime = fs::metadata(&file).map(|m| (m.mtime(), m.mtime_nsec())).ok();
    c.eq("chmod keeps the mtime", &file, Some(fixture::DEFAULT), mtime);
    let appended = OpenOptions::new().append(true).open(&file).and_then(|mut f| f.write_all(b"+"));
    c.ok("append after chmod", &file, appended);
    c.eq("a write keeps the chmod's mode", &file, Ok("600".into()), mode_of(&file));
    set_mode(c, &exe, 0o644);
    set_mode(c, &exe, 0o711);
    set_mode(c, &dir, 0o700);
    c.eq("a chmod'ed dir's file", &dir.join("f"), Ok("f\n".into()), text(&dir.join("f")));
    set_mode(c, &dir, 0o1777);
    set_mode(c, &dir.join("f"), 0o400);
    let new = c.path("c/new");
    c.ok("create", &new, fs::write(&new, b"new\n"));
    set_mode(c, &new, 0o604);
    set_mode(c, &new, 0o000);
    let made = c.path("c/made");
    c.ok("mkdir", &made, fs::create_dir(&made));
    set_mode(c, &made, 0o2750);
}

/// utimensat sets atime and mtime exactly (nanoseconds included), UTIME_OMIT leaves one alone,
/// UTIME_NOW takes the clock, and AT_SYMLINK_NOFOLLOW sets a symlink's own times.
pub fn utimens(c: &mut Checks) {
    let atime = TimeSpec::new(1_234_567_890, 123_456_789);
    let mtime = TimeSpec::new(1_111_111_111, 987_654_321);
    let exact = ((1_234_567_890, 123_456_789), (1_111_111_111, 987_654_321));
    let new = c.path("m/new");
    c.ok("create", &new, fs::write(&new, b"new\n"));
    for path in [c.path("m/file"), c.path("m/dir"), c.path("m/dir/f"), new] {
        let set = utimensat(AT_FDCWD, &path, &atime, &mtime, UtimensatFlags::FollowSymlink);
        c.ok("utimensat", &path, set.map_err(std::io::Error::from));
        c.eq("(atime, mtime) after utimensat", &path, Some(exact), times(&path));
        let later = TimeSpec::new(1_222_222_222, 5);
        let set = utimensat(AT_FDCWD, &path, &TimeSpec::UTIME_OMIT, &later, UtimensatFlags::FollowSymlink);
        c.ok("utimensat (atime UTIME_OMIT)", &path, set.map_err(std::io::Error::from));
        c.eq("UTIME_OMIT keeps atime", &path, Some((exact.0, (1_222_222_222, 5))), times(&path));
    }

    let file = c.path("m/file");
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let set = utimensat(
        AT_FDCWD,
        &file,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::UTIME_NOW,
        UtimensatFlags::FollowSymlink,
    );
    c.ok("utimensat (mtime UTIME_NOW)", &file, set.map_err(std::io::Error::from));
    let got = times(&file).map(|(_, (seconds, _))| seconds).unwrap_or(0);
    c.that("UTIME_NOW sets the mtime to now", &file, got >= before - 1, &format!(">= {before}"), got);

    let link = c.path("m/link");
    let target_times = times(&file);
    let set = utimensat(AT_FDCWD, &link, &atime, &mtime, UtimensatFlags::NoFollowSymlink);
    c.ok("utimensat AT_SYMLINK_NOFOLLOW on a staged symlink", &link, set.map_err(std::io::Error::from));
    c.eq("a symlink's own (atime, mtime)", &link, Some(exact), times(&link));
    c.eq("the symlink's target keeps its times", &file, target_times, times(&file));
}

//! Reading `/proc/self/mountinfo`: which mounts exist under a path, and who made them.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One line of mountinfo (the fields staging needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id.
    pub id: u32,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Filesystem type, e.g. `overlay`.
    pub fs_type: String,
    /// The mount source; for rebox's overlays, the tag naming the daemon that made it.
    pub source: String,
}

/// The mounts of this process's mount namespace, in mount order.
pub fn read() -> io::Result<Vec<MountEntry>> {
    Ok(parse(&fs::read_to_string("/proc/self/mountinfo")?))
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mount_point options [optional fields...] - fstype source super_options
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let id = fields.next()?.parse().ok()?;
    let mount_point = unescape(fields.nth(3)?);
    let mut after = after.split(' ');
    let fs_type = after.next()?.to_owned();
    let source = String::from_utf8_lossy(unescape(after.next()?).as_os_str().as_encoded_bytes()).into_owned();
    Some(MountEntry { id, mount_point, fs_type, source })
}

/// Undoes the kernel's octal escapes (`\040` for space, and tab, newline and backslash).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(digits) => {
                out.push(digits.iter().fold(0u8, |n, d| n.wrapping_mul(8).wrapping_add(d - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The mounts at or below `path`, deepest (and among equals, latest) first: the order to
/// unmount them in.
pub fn under<'a>(mounts: &'a [MountEntry], path: &Path) -> Vec<&'a MountEntry> {
    let mut found: Vec<&MountEntry> = mounts.iter().filter(|m| m.mount_point.starts_with(path)).collect();
    sort_for_unmount(&mut found);
    found
}

/// Orders mounts so that each comes before anything it is mounted on.
pub fn sort_for_unmount(mounts: &mut [&MountEntry]) {
    mounts.sort_by(|a, b| {
        let depth = |m: &MountEntry| m.mount_point.components().count();
        depth(b).cmp(&depth(a)).then(b.id.cmp(&a.id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
46 27 0:41 / /c/cas/staging/rebox-1-a/1/root rw,nosuid,nodev,relatime - overlay rebox-stage:rebox-1-a rw,lowerdir=/x
47 46 0:41 /d /c/cas/staging/rebox-1-a/1/root/d ro,relatime shared:5 - overlay rebox-stage:rebox-1-a rw,lowerdir=/x
48 27 0:42 / /tmp/with\\040space rw - tmpfs tmp\\134fs rw
bad line
";

    #[test]
    fn parses_fields_and_escapes() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[1].id, 46);
        assert_eq!(mounts[1].fs_type, "overlay");
        assert_eq!(mounts[1].source, "rebox-stage:rebox-1-a");
        assert_eq!(
            mounts[2].mount_point,
            Path::new("/c/cas/staging/rebox-1-a/1/root/d"),
            "optional fields skipped"
        );
        assert_eq!(mounts[3].mount_point, Path::new("/tmp/with space"));
        assert_eq!(mounts[3].source, "tmp\\fs");
    }

    #[test]
    fn under_lists_deepest_first_and_not_siblings() {
        let mounts = parse(SAMPLE);
        let found = under(&mounts, Path::new("/c/cas/staging/rebox-1-a"));
        let ids: Vec<u32> = found.iter().map(|m| m.id).collect();
        assert_eq!(ids, [47, 46]);
        assert!(
            under(&mounts, Path::new("/c/cas/staging/rebox-1")).is_empty(),
            "a name prefix is not a parent"
        );
    }
}

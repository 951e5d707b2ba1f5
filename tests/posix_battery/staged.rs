//! What a stage shows before anything changes it (every fixture entry with its kind, mode, mtime,
//! owner, content and identity), and that nothing done to a stage reaches the CAS objects.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rebox::store::Store;

use super::Checks;
use super::fixture::{self, Entry, Kind};

/// Every entry shows as the tree says: 0755/0644 or the node property's mode, mtime 1321009871
/// or the node property's, the current user as owner, the content or target; each dir lists
/// exactly its entries; every entry is on the root's device; and files that are separate in the
/// tree are separate files (nlink 1, distinct inode numbers), even where their blobs are equal.
pub fn attributes(c: &mut Checks) {
    let entries = fixture::entries();
    let root_dev = c.ok("lstat", &c.path(""), fs::symlink_metadata(c.root())).map(|m| m.dev());
    let owner = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let mut identities: HashMap<(u64, u64), String> = HashMap::new();
    let mut shared = Vec::new();
    let mut linked = Vec::new();
    for entry in &entries {
        let path = c.path(&entry.path);
        let Some(m) = c.ok("lstat", &path, fs::symlink_metadata(&path)) else { continue };
        check_entry(c, entry, &path, &m);
        c.eq("owner (uid, gid)", &path, owner, (m.uid(), m.gid()));
        if let Some(dev) = root_dev {
            c.eq("st_dev is the root's", &path, dev, m.dev());
        }
        if let Some(first) = identities.insert((m.dev(), m.ino()), entry.path.clone()) {
            shared.push(format!("{first} and {}", entry.path));
        }
        if m.is_file() && m.nlink() != 1 {
            linked.push(format!("{} nlink {}", entry.path, m.nlink()));
        }
    }
    let root = c.root().to_owned();
    let summary = |list: &[String]| {
        format!("{} entries: {}", list.len(), list.iter().take(4).cloned().collect::<Vec<_>>().join(", "))
    };
    c.that(
        "separate files have distinct (st_dev, st_ino)",
        &root,
        shared.is_empty(),
        "none shared",
        summary(&shared),
    );
    c.that(
        "a file linked once in the tree has st_nlink 1",
        &root,
        linked.is_empty(),
        "all 1",
        summary(&linked),
    );
    for dir in std::iter::once(String::new()).chain(fixture::dirs(&entries)) {
        check_dir(c, &entries, &dir);
    }
}

fn check_entry(c: &mut Checks, entry: &Entry, path: &Path, m: &fs::Metadata) {
    let kind = |m: &fs::Metadata| match () {
        _ if m.file_type().is_symlink() => "symlink",
        _ if m.is_dir() => "dir",
        _ if m.is_file() => "file",
        _ => "other",
    };
    match &entry.kind {
        Kind::File { content, .. } => {
            c.eq("file type", path, "file", kind(m));
            c.eq("mode", path, format!("{:o}", entry.mode()), format!("{:o}", m.mode() & 0o7777));
            c.eq("size", path, content.len() as u64, m.len());
            if let Some(got) = c.ok("read", path, fs::read(path)) {
                c.eq("content", path, String::from_utf8_lossy(content), String::from_utf8_lossy(&got));
            }
        }
        Kind::Symlink(target) => {
            c.eq("file type", path, "symlink", kind(m));
            c.eq("st_size of a symlink is its target's length", path, target.len() as u64, m.len());
            if let Some(got) = c.ok("readlink", path, fs::read_link(path)) {
                c.eq("readlink", path, Path::new(target), got.as_path());
            }
        }
        Kind::Dir => {
            c.eq("file type", path, "dir", kind(m));
            c.eq("mode", path, "755".to_owned(), format!("{:o}", m.mode() & 0o7777));
        }
    }
    c.eq("mtime (s, ns)", path, entry.mtime(), (m.mtime(), m.mtime_nsec()));
}

/// The dir `dir` (relative; "" for the root) lists exactly its fixture entries, and shows 0755
/// and the default mtime.
fn check_dir(c: &mut Checks, entries: &[Entry], dir: &str) {
    let path = c.path(dir);
    let mut expected = BTreeSet::new();
    for entry in entries {
        let relative = Path::new(&entry.path);
        for ancestor in relative.ancestors().skip(1) {
            if ancestor == Path::new(dir) {
                let below = relative.strip_prefix(ancestor).unwrap();
                expected.insert(below.iter().next().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    if let Some(m) = c.ok("stat", &path, fs::symlink_metadata(&path)) {
        c.eq("dir mode", &path, "755".to_owned(), format!("{:o}", m.mode() & 0o7777));
        c.eq("dir mtime (s, ns)", &path, fixture::DEFAULT, (m.mtime(), m.mtime_nsec()));
    }
    let listing = fs::read_dir(&path).and_then(|entries| {
        entries.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect()
    });
    if let Some(got) =
        c.ok("readdir", &path, listing.map(|names: Vec<String>| names.into_iter().collect::<BTreeSet<_>>()))
    {
        c.eq("readdir lists the tree's entries", &path, expected, got);
    }
}

/// Every blob of the fixture is still in `store`, intact, 0444 and linked once: nothing done to
/// a stage reached it. Returns what is wrong, one line per object.
pub fn cas_damage(store: &Store) -> Vec<String> {
    let mut damage = Vec::new();
    for digest in fixture::blobs(store) {
        let path = store.object_path(&digest);
        match store.verify(&digest) {
            Ok(true) => {}
            Ok(false) => damage.push(format!("object {digest} ({}): content changed", path.display())),
            Err(error) => damage.push(format!("object {digest}: verify: {error}")),
        }
        match fs::metadata(&path) {
            Ok(m) if m.mode() & 0o7777 != 0o444 => {
                damage.push(format!("object {digest}: mode expected 444, got {:o}", m.mode() & 0o7777))
            }
            Ok(m) if m.nlink() != 1 => {
                damage.push(format!("object {digest}: nlink expected 1, got {}", m.nlink()))
            }
            Ok(_) => {}
            Err(error) => damage.push(format!("object {digest}: stat: {error}")),
        }
    }
    damage
}

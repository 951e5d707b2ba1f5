//! Symlinks (readlink, dangling, following, replacing, renaming) and hardlinks (nlink counts,
//! one file under two names, unlinking one name), on staged entries and new ones.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt, symlink as make_symlink};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::{Checks, identity, mode_of, text};

fn target(path: &Path) -> Result<PathBuf, ErrorKind> {
    fs::read_link(path).map_err(|e| e.kind())
}

fn nlink(path: &Path) -> Option<u64> {
    fs::symlink_metadata(path).ok().map(|m| m.nlink())
}

/// Staged and new symlinks read back their targets, lead to their targets' content (writes
/// too), dangle without error until the target exists, can be replaced and renamed, and
/// refuse to be made over an existing name.
pub fn symlink(c: &mut Checks) {
    let (link, dangling, abs) = (c.path("s/link"), c.path("s/dangling"), c.path("s/abs"));
    c.eq("readlink a staged symlink", &link, Ok("target".into()), target(&link));
    c.eq("read through a staged symlink", &link, Ok("target\n".into()), text(&link));
    c.eq("readlink a staged dangling symlink", &dangling, Ok("nowhere".into()), target(&dangling));
    c.fails("stat through a dangling symlink", &dangling, fs::metadata(&dangling), Errno::ENOENT);
    let is_link = fs::symlink_metadata(&dangling).map(|m| m.file_type().is_symlink());
    c.eq("lstat a dangling symlink", &dangling, Ok(true), is_link.map_err(|e| e.kind()));
    c.eq("readlink an absolute staged symlink", &abs, Ok("/etc/passwd".into()), target(&abs));
    let dirlink = c.path("s/dirlink");
    c.eq(
        "read a file through a staged symlink to a dir",
        &dirlink.join("dup"),
        Ok("hello\n".into()),
        text(&dirlink.join("dup")),
    );

    let written = OpenOptions::new().write(true).open(&link).and_then(|f| f.write_all_at(b"T", 0));
    c.ok("write through a staged symlink", &link, written);
    c.eq("the target has the write", &c.path("s/target"), Ok("Target\n".into()), text(&c.path("s/target")));
    c.eq("the symlink is still a symlink", &link, Ok("target".into()), target(&link));

    let new = c.path("s/new");
    c.ok("symlink", &new, make_symlink("target", &new));
    c.eq("readlink a new symlink", &new, Ok("target".into()), target(&new));
    c.eq("read through a new symlink", &new, Ok("Target\n".into()), text(&new));
    let size = fs::symlink_metadata(&new).map(|m| m.len()).ok();
    c.eq("st_size of a new symlink is its target's length", &new, Some(6), size);
    c.fails("symlink over an existing name", &new, make_symlink("x", &new), Errno::EEXIST);
    c.fails(
        "symlink over a staged file",
        &c.path("s/target"),
        make_symlink("x", c.path("s/target")),
        Errno::EEXIST,
    );

    let later = c.path("s/later");
    c.ok("symlink to a missing target", &later, make_symlink("later-target", &later));
    c.fails("read through a dangling new symlink", &later, fs::read(&later), Errno::ENOENT);
    c.ok("create the target", &c.path("s/later-target"), fs::write(c.path("s/later-target"), b"now\n"));
    c.eq("a symlink whose target appeared", &later, Ok("now\n".into()), text(&later));
    let created = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&dangling)
        .and_then(|mut f| f.write_all(b"made\n"));
    c.ok("O_CREAT through a staged dangling symlink", &dangling, created);
    c.eq(
        "O_CREAT through a dangling symlink makes its target",
        &c.path("s/nowhere"),
        Ok("made\n".into()),
        text(&c.path("s/nowhere")),
    );

    let replace = c.path("s/replace");
    c.ok("unlink a staged symlink", &replace, fs::remove_file(&replace));
    c.eq(
        "unlinking a symlink leaves its target",
        &c.path("s/target"),
        Ok("Target\n".into()),
        text(&c.path("s/target")),
    );
    c.ok("symlink under the staged symlink's name", &replace, make_symlink("dangling", &replace));
    c.eq("readlink the replaced symlink", &replace, Ok("dangling".into()), target(&replace));

    let abs2 = c.path("s/abs2");
    c.ok("rename a staged symlink", &abs, fs::rename(&abs, &abs2));
    c.eq("readlink a renamed staged symlink", &abs2, Ok("/etc/passwd".into()), target(&abs2));
}

/// A second name is the same file: both names count in st_nlink, share the inode, and see each
/// other's writes and chmods; unlinking one name keeps the other. Separate staged files with
/// equal content stay separate. Hardlinking a dir, or over an existing name, is refused.
pub fn hardlink(c: &mut Checks) {
    let new = c.path("h/new");
    c.ok("create", &new, fs::write(&new, b"linked\n"));
    for (name, second) in [(c.path("h/file"), c.path("h/file-link")), (new, c.path("h/new-link"))] {
        if c.ok("link", &second, fs::hard_link(&name, &second)).is_none() {
            continue;
        }
        c.eq("st_nlink of the first name after link", &name, Some(2), nlink(&name));
        c.eq("st_nlink of the second name", &second, Some(2), nlink(&second));
        c.eq("both names are one inode", &second, identity(&name).ok(), identity(&second).ok());
        let written = OpenOptions::new().write(true).open(&second).and_then(|f| f.write_all_at(b"L", 0));
        c.ok("write through the second name", &second, written);
        c.eq("the write seen through the first name", &name, Ok("Linked\n".into()), text(&name));
        c.ok(
            "chmod through the first name",
            &name,
            fs::set_permissions(&name, fs::Permissions::from_mode(0o600)),
        );
        c.eq("the mode seen through the second name", &second, Ok("600".into()), mode_of(&second));
        let appended = OpenOptions::new().append(true).open(&name).and_then(|mut f| f.write_all(b"+"));
        c.ok("append through the first name", &name, appended);
        c.ok("unlink the first name", &name, fs::remove_file(&name));
        c.fails("the unlinked name", &name, fs::symlink_metadata(&name), Errno::ENOENT);
        c.eq("st_nlink of the name left", &second, Some(1), nlink(&second));
        c.eq("the name left keeps every write", &second, Ok("Linked\n+".into()), text(&second));
    }

    let (a, b) = (c.path("h/twin-a"), c.path("h/twin-b"));
    let separate = matches!((identity(&a), identity(&b)), (Ok(x), Ok(y)) if x != y);
    c.that(
        "staged files with equal content are separate inodes",
        &b,
        separate,
        "distinct (st_dev, st_ino)",
        (identity(&a).ok(), identity(&b).ok()),
    );
    let written = OpenOptions::new().write(true).open(&a).and_then(|f| f.write_all_at(b"S", 0));
    c.ok("write a staged file", &a, written);
    c.eq("its equal-content twin is unchanged", &b, Ok("same\n".into()), text(&b));
    c.eq("st_nlink of a written staged file", &a, Some(1), nlink(&a));

    let sub = c.path("h/sub");
    c.ok("mkdir", &sub, fs::create_dir(&sub));
    let across = sub.join("twin-b");
    c.ok("link a staged file across dirs", &across, fs::hard_link(&b, &across));
    c.eq("st_nlink after linking across dirs", &b, Some(2), nlink(&b));
    c.eq("both names are one inode", &across, identity(&b).ok(), identity(&across).ok());
    c.ok("rename the first name", &b, fs::rename(&b, c.path("h/twin-b-renamed")));
    c.eq("st_nlink after renaming one name", &across, Some(2), nlink(&across));

    let h = c.path("h");
    c.fails("link a dir", &h, fs::hard_link(&h, c.path("h-link")), Errno::EPERM);
    c.fails("link over an existing name", &a, fs::hard_link(&across, &a), Errno::EEXIST);
    c.fails(
        "link a missing name",
        &c.path("h/never"),
        fs::hard_link(c.path("h/never"), c.path("h/x")),
        Errno::ENOENT,
    );
}

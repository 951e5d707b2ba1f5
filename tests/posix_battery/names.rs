//! The namespace: rename (files, over files, across dirs, dirs, and the refusals), unlink (also
//! of open files) and mkdir/rmdir, on staged entries and new ones.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt};
use std::path::Path;

use nix::errno::Errno;

use super::{Checks, created_mode, identity, mode_of, text};

fn gone(c: &mut Checks, op: &str, path: &Path) {
    c.fails(op, path, fs::symlink_metadata(path), Errno::ENOENT);
}

fn names(dir: &Path) -> Result<Vec<String>, ErrorKind> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .and_then(|entries| {
            entries.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect()
        })
        .map_err(|e| e.kind())?;
    names.sort();
    Ok(names)
}

/// Renames move the name and keep the file (content, mode, mtime, identity); a target is
/// replaced atomically; dirs move with their contents, within and across dirs; a dir replaces
/// only an empty dir; a file can't replace a dir nor a dir a file.
pub fn rename(c: &mut Checks) {
    let (src, renamed) = (c.path("r/src"), c.path("r/src-renamed"));
    let before = identity(&src).ok();
    if c.ok("rename a staged file", &src, fs::rename(&src, &renamed)).is_some() {
        gone(c, "the old name after rename", &src);
        c.eq("content after rename", &renamed, Ok("src\n".into()), text(&renamed));
        c.eq("rename keeps the mode", &renamed, Ok("644".into()), mode_of(&renamed));
        let mtime = fs::symlink_metadata(&renamed).map(|m| (m.mtime(), m.mtime_nsec())).ok();
        c.eq("rename keeps the mtime", &renamed, Some(super::fixture::DEFAULT), mtime);
        c.eq("rename keeps (st_dev, st_ino)", &renamed, before, identity(&renamed).ok());
    }

    let (over, victim) = (c.path("r/over-me"), c.path("r/victim"));
    c.ok("rename a staged file over a staged file", &over, fs::rename(&over, &victim));
    gone(c, "the old name after rename over a file", &over);
    c.eq("the target has the source's content", &victim, Ok("over-me\n".into()), text(&victim));

    let (fresh, afile) = (c.path("r/fresh"), c.path("r/afile"));
    c.ok("create", &fresh, fs::write(&fresh, b"fresh\n"));
    c.ok("rename a new file over a staged file", &fresh, fs::rename(&fresh, &afile));
    c.eq("the staged target has the new content", &afile, Ok("fresh\n".into()), text(&afile));
    c.ok("rename a file onto itself", &afile, fs::rename(&afile, &afile));
    c.eq("rename onto itself changes nothing", &afile, Ok("fresh\n".into()), text(&afile));

    let (across, moved) = (c.path("r/across"), c.path("r/other/across"));
    c.ok("rename a staged file across dirs", &across, fs::rename(&across, &moved));
    gone(c, "the old name after rename across dirs", &across);
    c.eq("content after rename across dirs", &moved, Ok("across\n".into()), text(&moved));
    c.eq(
        "the target dir's other entries",
        &c.path("r/other"),
        Ok(vec!["across".into(), "keep".into()]),
        names(&c.path("r/other")),
    );

    let (dir, dir_renamed) = (c.path("r/dir"), c.path("r/dir-renamed"));
    if c.ok("rename a staged dir", &dir, fs::rename(&dir, &dir_renamed)).is_some() {
        gone(c, "the old name after renaming a dir", &dir);
        let (inner, leaf) = (dir_renamed.join("inner"), dir_renamed.join("deeper/leaf"));
        c.eq("a renamed dir's file", &inner, Ok("inner\n".into()), text(&inner));
        c.eq("a renamed dir's nested file", &leaf, Ok("leaf\n".into()), text(&leaf));
        c.ok(
            "write in a renamed dir",
            &inner,
            OpenOptions::new().append(true).open(&inner).and_then(|mut f| f.write_all(b"+")),
        );
        c.eq("write in a renamed dir", &inner, Ok("inner\n+".into()), text(&inner));
    }
    let (hop, hopped) = (c.path("r/hop"), c.path("r/other/hop"));
    if c.ok("rename a staged dir across dirs", &hop, fs::rename(&hop, &hopped)).is_some() {
        gone(c, "the old name after renaming a dir across dirs", &hop);
        c.eq(
            "a dir renamed across dirs keeps its files",
            &hopped.join("a"),
            Ok("a\n".into()),
            text(&hopped.join("a")),
        );
    }
    let (made, made_moved) = (c.path("r/made"), c.path("r/other/made"));
    c.ok("mkdir", &made, fs::create_dir(&made));
    c.ok("create", &made.join("f"), fs::write(made.join("f"), b"made\n"));
    c.ok("rename a new dir across dirs", &made, fs::rename(&made, &made_moved));
    c.eq(
        "a new dir renamed across dirs keeps its files",
        &made_moved.join("f"),
        Ok("made\n".into()),
        text(&made_moved.join("f")),
    );

    let (filled, empty) = (c.path("r/filled"), c.path("r/empty"));
    c.ok("mkdir", &filled, fs::create_dir(&filled));
    c.ok("create", &filled.join("f"), fs::write(filled.join("f"), b"filled\n"));
    c.ok("rename a new dir over an empty staged dir", &filled, fs::rename(&filled, &empty));
    c.eq("the replaced dir lists the source's entries", &empty, Ok(vec!["f".into()]), names(&empty));
    let (nonempty, full) = (c.path("r/nonempty"), c.path("r/full"));
    c.ok("mkdir", &nonempty, fs::create_dir(&nonempty));
    c.fails(
        "rename a dir over a non-empty staged dir",
        &nonempty,
        fs::rename(&nonempty, &full),
        Errno::ENOTEMPTY,
    );
    c.eq("the non-empty dir is intact", &full, Ok(vec!["x".into()]), names(&full));
    let adir = c.path("r/adir");
    c.fails("rename a file over a dir", &renamed, fs::rename(&renamed, &adir), Errno::EISDIR);
    c.fails("rename a dir over a file", &adir, fs::rename(&adir, &afile), Errno::ENOTDIR);
    c.fails("rename a missing name", &src, fs::rename(&src, c.path("r/never")), Errno::ENOENT);
}

/// Unlinking removes the name (a new file of that name starts empty) while descriptors open on
/// the file go on reading and writing it, with st_nlink 0.
pub fn unlink(c: &mut Checks) {
    let gone_file = c.path("u/gone");
    c.ok("unlink a staged file", &gone_file, fs::remove_file(&gone_file));
    gone(c, "an unlinked staged file", &gone_file);
    c.eq(
        "the dir no longer lists it",
        &c.path("u"),
        Ok(false),
        names(&c.path("u")).map(|n| n.contains(&"gone".into())),
    );
    let recreated = OpenOptions::new().write(true).create_new(true).open(&gone_file);
    c.ok("O_CREAT|O_EXCL the unlinked name", &gone_file, recreated);
    c.eq(
        "a file recreated under an unlinked name starts empty",
        &gone_file,
        Ok(String::new()),
        text(&gone_file),
    );

    let again = c.path("u/again");
    c.ok("unlink a staged file", &again, fs::remove_file(&again));
    c.ok("create a new file of the same name", &again, fs::write(&again, b"new\n"));
    c.eq("the new file's content", &again, Ok("new\n".into()), text(&again));

    let open_ro = c.path("u/open-ro");
    if let Some(mut f) = c.ok("open O_RDONLY", &open_ro, File::open(&open_ro)) {
        c.ok("unlink a staged file open for reading", &open_ro, fs::remove_file(&open_ro));
        gone(c, "an unlinked open file's name", &open_ro);
        let mut read = String::new();
        c.ok("read the unlinked file", &open_ro, f.read_to_string(&mut read));
        c.eq("read the unlinked file", &open_ro, "open-ro\n", &read);
        c.eq("fstat st_nlink of an unlinked file", &open_ro, Some(0), f.metadata().ok().map(|m| m.nlink()));
    }

    let new_open = c.path("u/new-open");
    c.ok("create", &new_open, fs::write(&new_open, b"new-open\n"));
    for (path, start) in [(c.path("u/open-rw"), "open-rw\n"), (new_open, "new-open\n")] {
        let opened = OpenOptions::new().read(true).write(true).open(&path);
        let Some(mut f) = c.ok("open O_RDWR", &path, opened) else { continue };
        c.ok("unlink a file open for writing", &path, fs::remove_file(&path));
        gone(c, "an unlinked open file's name", &path);
        c.ok("pwrite the unlinked file", &path, f.write_all_at(b"O", 0));
        c.ok(
            "append to the unlinked file",
            &path,
            f.seek(SeekFrom::End(0)).and_then(|_| f.write_all(b"tail")),
        );
        let mut read = String::new();
        c.ok(
            "read the unlinked file",
            &path,
            f.seek(SeekFrom::Start(0)).and_then(|_| f.read_to_string(&mut read)),
        );
        c.eq("an unlinked file keeps its writes", &path, format!("O{}tail", &start[1..]), read);
        c.eq("fstat st_nlink of an unlinked file", &path, Some(0), f.metadata().ok().map(|m| m.nlink()));
        c.ok("fsync the unlinked file", &path, f.sync_all());
        gone(c, "the name stays gone after writing the open file", &path);
    }

    let adir = c.path("u/adir");
    c.fails("unlink a dir", &adir, fs::remove_file(&adir), Errno::EISDIR);
    c.fails("unlink a missing name", &c.path("u/never"), fs::remove_file(c.path("u/never")), Errno::ENOENT);
}

/// mkdir makes an empty dir with its mode (under the umask) and refuses an existing name;
/// rmdir refuses a non-empty dir, removes an emptied staged one, and a dir made again under a
/// removed staged dir's name is empty.
pub fn mkdir_rmdir(c: &mut Checks) {
    let new = c.path("d/new");
    if c.ok("mkdir 0750", &new, fs::DirBuilder::new().mode(0o750).create(&new)).is_some() {
        c.eq("mode of a new dir", &new, Ok(created_mode(0o750)), mode_of(&new));
        c.eq("a new dir is empty", &new, Ok(vec![]), names(&new));
        c.ok("create", &new.join("f"), fs::write(new.join("f"), b"f"));
        c.fails("rmdir a non-empty new dir", &new, fs::remove_dir(&new), Errno::ENOTEMPTY);
        c.ok("unlink", &new.join("f"), fs::remove_file(new.join("f")));
        c.ok("rmdir an emptied new dir", &new, fs::remove_dir(&new));
        gone(c, "a removed dir", &new);
    }
    let full = c.path("d/full");
    c.fails("mkdir over a staged dir", &full, fs::create_dir(&full), Errno::EEXIST);
    c.fails("mkdir over a staged file", &full.join("a"), fs::create_dir(full.join("a")), Errno::EEXIST);
    let sub = c.path("d/full/b/sub");
    c.ok("mkdir in a staged dir", &sub, fs::create_dir(&sub));
    c.eq(
        "a staged dir lists a new subdir",
        &c.path("d/full/b"),
        Ok(vec!["c".into(), "sub".into()]),
        names(&c.path("d/full/b")),
    );
    c.fails("rmdir a non-empty staged dir", &full, fs::remove_dir(&full), Errno::ENOTEMPTY);
    c.fails("rmdir a file", &full.join("a"), fs::remove_dir(full.join("a")), Errno::ENOTDIR);

    let emptied = c.path("d/emptied");
    c.ok("unlink", &emptied.join("one"), fs::remove_file(emptied.join("one")));
    c.fails("rmdir a staged dir with one entry left", &emptied, fs::remove_dir(&emptied), Errno::ENOTEMPTY);
    c.ok("unlink", &emptied.join("two"), fs::remove_file(emptied.join("two")));
    c.eq("an emptied staged dir lists nothing", &emptied, Ok(vec![]), names(&emptied));
    c.ok("rmdir an emptied staged dir", &emptied, fs::remove_dir(&emptied));
    gone(c, "a removed staged dir", &emptied);

    let reborn = c.path("d/reborn");
    c.ok("unlink", &reborn.join("old"), fs::remove_file(reborn.join("old")));
    c.ok("rmdir an emptied staged dir", &reborn, fs::remove_dir(&reborn));
    c.ok("mkdir under the removed dir's name", &reborn, fs::create_dir(&reborn));
    c.eq("a dir made under a removed staged dir's name is empty", &reborn, Ok(vec![]), names(&reborn));
    gone(c, "a removed staged dir's file, after mkdir", &reborn.join("old"));

    let b = c.path("d/full/b");
    c.ok("rmdir", &sub, fs::remove_dir(&sub));
    c.ok("unlink", &b.join("c"), fs::remove_file(b.join("c")));
    c.ok("rmdir a nested staged dir emptied", &b, fs::remove_dir(&b));
    c.eq("the parent lists what is left", &full, Ok(vec!["a".into()]), names(&full));
}

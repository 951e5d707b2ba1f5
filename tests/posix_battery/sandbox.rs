//! A subset of the battery inside the real sandbox, through the real binary, as an action runs:
//! `rebox run --cas-dir` on an Action whose platform sets unixUID/unixGID 1000, its input root
//! holding busybox and staged inputs under `in/`. A shell script changes staged inputs and new
//! files with the usual tools and prints a `FAIL` line per check that does not hold (op, path,
//! expected, got); its exit code is the number of failures. It also prints the fstype of the
//! sandbox's root mount, which says how the inputs were staged.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use rebox::digest::DigestFunction;
use rebox::store::Store;

use crate::run_support::{Cas, Kind, Spec, busybox_root, run_action, store_action};

/// Applets the script uses beyond those `busybox_root` links.
const MORE_APPLETS: &[&str] =
    &["[", "chmod", "dd", "mv", "printf", "readlink", "rm", "rmdir", "stat", "tail", "test", "truncate"];

/// The staged inputs: (path under `in/`, content, executable).
const INPUTS: &[(&str, &str, bool)] = &[
    ("plain", "hello\n", false),
    ("dup", "hello\n", false),
    ("exe", "#!/bin/sh\necho hi\n", true),
    ("trunc", "truncate me\n", false),
    ("sub/inner", "inner\n", false),
    ("full/x", "x\n", false),
];

const SCRIPT: &str = r#"
failed=0
expect() { if [ "$2" != "$3" ]; then echo "FAIL $1: expected [$2], got [$3]"; failed=$((failed+1)); fi; }
exists() { if [ -e "$1" ] || [ -L "$1" ]; then echo present; else echo gone; fi; }
while read -r id parent devno mroot mpoint rest; do
    if [ "$mpoint" = / ]; then fs=${rest#*- }; fi
done < /proc/self/mountinfo
echo "root-fstype=${fs%% *}"
umask 022
cd /in
expect "id -u" 1000 "$(id -u)"
expect "id -g" 1000 "$(id -g)"
expect "owner of staged in/plain" 1000:1000 "$(stat -c %u:%g plain)"
expect "mode of staged in/plain" 644 "$(stat -c %a plain)"
expect "mode of staged in/exe" 755 "$(stat -c %a exe)"
expect "mtime of staged in/plain" 1321009871 "$(stat -c %Y plain)"
expect "mtime of staged dir in/sub" 1321009871 "$(stat -c %Y sub)"
expect "st_nlink of staged in/plain" 1 "$(stat -c %h plain)"

printf HE | dd of=plain conv=notrunc 2>/dev/null
expect "in-place write of staged in/plain" HEllo "$(cat plain)"
expect "staged in/dup after writing its twin in/plain" hello "$(cat dup)"
echo more >> exe
expect "append to staged in/exe" more "$(tail -n 1 exe)"
expect "mode of in/exe after a write" 755 "$(stat -c %a exe)"
truncate -s 2 trunc
expect "truncate staged in/trunc" tr "$(cat trunc)"
echo new > new
expect "create in/new" new "$(cat new)"
expect "mode of new in/new" 644 "$(stat -c %a new)"
expect "owner of new in/new" 1000:1000 "$(stat -c %u:%g new)"

mv plain renamed
expect "rename staged in/plain: the old name" gone "$(exists plain)"
expect "rename staged in/plain: the new name" HEllo "$(cat renamed)"
mv new renamed
expect "rename new in/new over in/renamed" new "$(cat renamed)"
mv sub moved
expect "rename staged dir in/sub" inner "$(cat moved/inner)"
expect "rename staged dir in/sub: the old name" gone "$(exists sub)"
mkdir other
mv moved other/
expect "rename dir in/moved across dirs" inner "$(cat other/moved/inner)"

exec 3< dup
rm dup
expect "unlink staged in/dup: the name" gone "$(exists dup)"
expect "read staged in/dup open before its unlink" hello "$(cat <&3)"
exec 3<&-

chmod 600 exe
expect "chmod 600 staged in/exe" 600 "$(stat -c %a exe)"
chmod 000 exe
expect "read a 000 file as its owner (not root)" denied \
    "$(cat exe >/dev/null 2>&1 && echo read || echo denied)"
chmod 644 exe
expect "read after chmod 644" more "$(tail -n 1 exe)"

mkdir newdir
expect "mkdir in/newdir" 755 "$(stat -c %a newdir)"
expect "rmdir non-empty staged in/full" refused "$(rmdir full 2>/dev/null && echo removed || echo refused)"
expect "in/full/x after the refused rmdir" x "$(cat full/x)"
rm full/x
rmdir full
expect "rmdir emptied staged in/full" gone "$(exists full)"

ln -s renamed slink
expect "readlink new in/slink" renamed "$(readlink slink)"
expect "read through in/slink" new "$(cat slink)"
expect "readlink staged in/link" plain "$(readlink link)"
expect "staged in/link dangles after its target's rename" gone "$(cat link 2>/dev/null || echo gone)"

ln trunc trunc-link
expect "st_nlink of staged in/trunc after ln" 2 "$(stat -c %h trunc)"
printf + >> trunc-link
expect "a write through in/trunc-link seen in in/trunc" tr+ "$(cat trunc)"
rm trunc
expect "st_nlink of in/trunc-link after unlinking in/trunc" 1 "$(stat -c %h trunc-link)"
expect "in/trunc-link after unlinking in/trunc" tr+ "$(cat trunc-link)"
exit $failed
"#;

/// What one run of the subset gave.
#[derive(Debug)]
pub struct Outcome {
    /// The fstype of the sandbox's root mount.
    pub root_fstype: String,
    /// The action's exit code: the number of failed checks.
    pub exit_code: i32,
    /// The script's output (the `FAIL` lines).
    pub stdout: String,
    /// What is wrong with the input blobs in the CAS after the run (nothing, normally).
    pub cas_damage: Vec<String>,
}

/// Runs the subset with `rebox run --cas-dir … --staging-mode=MODE`.
pub fn run(staging_mode: &str) -> Outcome {
    let cas = Cas::new(Kind::Embedded);
    let root = tempfile::tempdir().unwrap();
    busybox_root(root.path());
    for applet in MORE_APPLETS {
        symlink("busybox", root.path().join("bin").join(applet)).unwrap();
    }
    for (path, content, executable) in INPUTS {
        let path = root.path().join("in").join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        let mode = if *executable { 0o755 } else { 0o644 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    symlink("plain", root.path().join("in/link")).unwrap();
    let mut spec = Spec::sh(SCRIPT);
    spec.platform("unixUID", "1000").platform("unixGID", "1000");
    let action = store_action(&cas, root.path(), &spec);
    let run = run_action(&cas, &action, &[&format!("--staging-mode={staging_mode}")]);
    let result = run.ok().clone();
    let stdout = result.stdout_digest.as_ref().map(|d| String::from_utf8_lossy(&cas.read(d)).into_owned());
    let stdout = stdout.unwrap_or_default();
    let root_fstype =
        stdout.lines().find_map(|l| l.strip_prefix("root-fstype=")).unwrap_or_default().to_owned();
    Outcome { root_fstype, exit_code: result.exit_code, stdout, cas_damage: input_damage(&cas.root) }
}

/// What is wrong with the input blobs in the store at `root`: content, mode 0444, one link.
fn input_damage(root: &Path) -> Vec<String> {
    let store = Store::open(root, DigestFunction::Sha256).unwrap();
    let mut damage = Vec::new();
    for (path, content, _) in INPUTS {
        let digest = store.digest_function().hash_bytes(content.as_bytes());
        if !store.verify(&digest).unwrap_or(false) {
            damage.push(format!("in/{path}: object {digest} changed or missing"));
        }
        match fs::metadata(store.object_path(&digest)) {
            Ok(m) if (m.mode() & 0o7777, m.nlink()) == (0o444, 1) => {}
            Ok(m) => damage.push(format!(
                "in/{path}: object {digest}: expected mode 444 nlink 1, got {:o} nlink {}",
                m.mode() & 0o7777,
                m.nlink()
            )),
            Err(error) => damage.push(format!("in/{path}: object {digest}: {error}")),
        }
    }
    damage
}

//! Writers' temporary files, and the removal of those left behind by writers that died.
//!
//! Where the filesystem allows, a temporary file is anonymous (`O_TMPFILE`): it has no name until
//! it is linked as an object, so creating it takes no directory lock (on ext4 the lock of one
//! shared directory serialised every parallel writer), there is no name to unlink afterwards,
//! and the kernel frees it if the writer dies. Elsewhere it is a named file in the private
//! directory below.
//!
//! Several processes may open one store root at once (the daemon and `rebox` commands), so start-up
//! clean-up must remove the temporary files of dead writers and never those of live ones. Each
//! [`Store`](super::Store) writes into a private [`LockedDir`] `cas/tmp/rebox-<pid>-<nonce>`,
//! locked for its whole life (see [`crate::locked_dir`] for why a lock and not pids or ages).
//! Only `rebox-*` directories are ever touched: anything else in `cas/tmp` is not ours to judge.
//!
//! Anonymous files are created in a generation subdirectory of the private directory, replaced by
//! a new one every so often ([`GENERATIONS`]), and the private directory spreads its
//! subdirectories over the filesystem: new inodes then keep away from the groups expiry has just
//! emptied ([`super::placement`] says why that matters on ext4).

use std::ffi::CStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use nix::fcntl::{AT_FDCWD, AtFlags, OFlag};
use nix::sys::stat::{Mode, mkdirat};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};

use super::error::{IoContext, Result, StoreError};
use super::placement;
use crate::anonymous_file;
use crate::locked_dir::{LockedDir, lock_if_abandoned, nonce};

/// Prefix of the private directories; nothing else in `cas/tmp` is touched.
const PREFIX: &str = "rebox-";

/// When a generation directory is replaced by the next.
const GENERATIONS: GenerationPolicy = GenerationPolicy {
    // A fraction of an ext4 group's 8,192 inodes; few enough directories to cost nothing.
    files: 1024,
    // A creation takes 10-16 µs of CPU on average in a group with room here, 40 µs to over 1 ms
    // in one with hundreds or thousands of inodes freed in the last minutes.
    slow_creation: Duration::from_micros(50),
    // Enough files to judge a group by; also bounds the directories a filesystem that is slow
    // everywhere costs (one more creation every `min_files`).
    min_files: 16,
};

/// How much of the running average of creation times each new creation makes up: 1/16.
const AVERAGE_WEIGHT_SHIFT: u32 = 4;

/// A generation is full after `files` files, or after `min_files` once creating a file takes more
/// CPU than `slow_creation` on average (its group is crowded with just-freed inodes: move on
/// rather than wait for the count).
#[derive(Debug, Clone, Copy)]
struct GenerationPolicy {
    files: u64,
    slow_creation: Duration,
    min_files: u64,
}

/// A store's private, locked directory for temporary files. Dropping it removes the directory.
#[derive(Debug)]
pub struct TmpDir {
    dir: LockedDir,
    next_file: AtomicU64,
    /// Whether anonymous files are used; cleared for good the first time the filesystem refuses.
    anonymous: AtomicBool,
    /// Where anonymous files are created now. Creating holds it shared, replacing it exclusive,
    /// so a generation is never removed under a file being created in it.
    generation: RwLock<Generation>,
    policy: GenerationPolicy,
}

/// A subdirectory `<number>-<nonce>` of the private directory, open for `O_TMPFILE`.
#[derive(Debug)]
struct Generation {
    number: u64,
    name: String,
    dir: OwnedFd,
    /// Anonymous files created in it so far.
    files: AtomicU64,
    /// Running average of the CPU time a creation took, in ns (0 before the first).
    creation_ns: AtomicU64,
}

/// A temporary file being written: anonymous, or named in the private directory. Dropping it
/// discards it (the named one is removed).
#[derive(Debug)]
pub struct TempFile {
    file: File,
    path: Option<PathBuf>,
}

impl TmpDir {
    /// Creates and locks a new private directory under `tmp` (which must exist).
    pub fn create(tmp: &Path) -> Result<Self> {
        Self::with_policy(tmp, GENERATIONS)
    }

    fn with_policy(tmp: &Path, policy: GenerationPolicy) -> Result<Self> {
        let dir = LockedDir::create(tmp, PREFIX, 0o700)
            .map_err(|e| StoreError::io("create a private temporary directory in", tmp, e))?;
        if let Err(e) = placement::spread_subdirectories(dir.fd()) {
            tracing::debug!("{}: generations stay next to it ({e})", dir.path().display());
        }
        let generation = RwLock::new(Generation::create(&dir, 0)?);
        let anonymous = AtomicBool::new(anonymous_file::linkable());
        Ok(Self { dir, next_file: AtomicU64::new(0), anonymous, generation, policy })
    }

    /// The directory's path.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a new, empty temporary file with permission bits `mode` (its descriptor is
    /// writable whatever `mode` says).
    pub fn create_file(&self, mode: u32) -> Result<TempFile> {
        if self.anonymous.load(Ordering::Relaxed) {
            let generation = self.generation.read().unwrap_or_else(PoisonError::into_inner);
            let started = thread_cpu_time();
            let created = anonymous_file::create(generation.dir.as_fd(), ".", mode);
            let took = thread_cpu_time().saturating_sub(started);
            let files = generation.files.fetch_add(1, Ordering::Relaxed) + 1;
            let average = generation.average_creation(took);
            match created {
                Ok(Some(file)) => {
                    let number = generation.number;
                    drop(generation);
                    if self.policy.is_full(files, average) {
                        tracing::debug!(
                            "temporary files: generation {number} full after {files} ({average:?} a creation)"
                        );
                        self.replace_generation(number);
                    }
                    return Ok(TempFile { file, path: None });
                }
                // Not supported by this filesystem (or kernel): use named files from now on.
                Ok(None) => self.anonymous.store(false, Ordering::Relaxed),
                Err(errno) => {
                    let path = generation.path(&self.dir);
                    return Err(StoreError::io("create temporary file in", path, errno.into()));
                }
            }
        }
        let path = self.unique_path();
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(mode).open(&path);
        let file = file.at("create temporary file", &path)?;
        Ok(TempFile { file, path: Some(path) })
    }

    /// Replaces generation `number` by the next one, unless another writer already did, and
    /// removes it (empty: its files have no names). Best effort: a placement, not a need, so a
    /// failure leaves the files going where they went.
    fn replace_generation(&self, number: u64) {
        let mut current = self.generation.write().unwrap_or_else(PoisonError::into_inner);
        if current.number != number {
            return;
        }
        let next = match Generation::create(&self.dir, number + 1) {
            Ok(next) => next,
            Err(e) => return tracing::debug!("temporary files stay in their generation: {e}"),
        };
        let replaced = std::mem::replace(&mut *current, next);
        drop(current);
        let _ = unlinkat(self.dir.fd(), replaced.name.as_str(), UnlinkatFlags::RemoveDir);
    }

    /// A fresh name in the private directory, for a file the caller creates.
    pub fn unique_path(&self) -> PathBuf {
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("blob-{n}"))
    }
}

/// CPU time this thread has used: what a crowded group costs a creation, whoever else wants the
/// CPU meanwhile (wall time would blame the group for every preemption).
fn thread_cpu_time() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

impl GenerationPolicy {
    /// Whether a generation that has had `files` files, created in `average` CPU time each (a
    /// running average), is full.
    fn is_full(&self, files: u64, average: Duration) -> bool {
        files >= self.files || (files >= self.min_files && average > self.slow_creation)
    }
}

impl Generation {
    /// Makes and opens generation `number` in `private`.
    ///
    /// The name has a random part because ext4's Orlov allocator starts its search for a group at
    /// a hash of the new directory's name: with plain numbers, every store's generation `n` went
    /// to the same group, the one that the last store's expiry had just emptied.
    fn create(private: &LockedDir, number: u64) -> Result<Self> {
        let name = format!("{number}-{:016x}", nonce());
        let path = || private.path().join(&name);
        mkdirat(private.fd(), name.as_str(), Mode::from_bits_truncate(0o700))
            .map_err(|errno| StoreError::io("create directory", path(), errno.into()))?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = nix::fcntl::openat(private.fd(), name.as_str(), flags, Mode::empty())
            .map_err(|errno| StoreError::io("open directory", path(), errno.into()))?;
        Ok(Self { number, name, dir, files: AtomicU64::new(0), creation_ns: AtomicU64::new(0) })
    }

    /// Adds a creation that took `took` to the running average; returns the new average.
    fn average_creation(&self, took: Duration) -> Duration {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let next = |average: u64| match average {
            0 => took,
            _ => average - (average >> AVERAGE_WEIGHT_SHIFT) + (took >> AVERAGE_WEIGHT_SHIFT),
        };
        let previous = self.creation_ns.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| Some(next(a)));
        Duration::from_nanos(next(previous.unwrap_or_else(|a| a)))
    }

    fn path(&self, private: &LockedDir) -> PathBuf {
        private.path().join(&self.name)
    }
}

impl TempFile {
    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A path naming the file, for error messages.
    pub fn display_path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("(anonymous temporary file)"))
    }

    /// Gives the file the name `name` in directory `dir`; fails with `EEXIST` if that is taken.
    pub fn link_at(&self, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
        match &self.path {
            Some(path) => linkat(AT_FDCWD, path.as_path(), dir, name, AtFlags::empty()),
            None => anonymous_file::link(&self.file, dir, name),
        }
        .map_err(io::Error::from)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Best effort: the next store to open the root removes any leftover.
            let _ = fs::remove_file(path);
        }
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        // Best effort: a leftover is removed by the next store to open the root.
        let _ = fs::remove_dir_all(self.dir.path());
    }
}

/// Removes the private directories under `tmp` whose owners are gone; returns how many.
pub fn remove_abandoned(tmp: &Path) -> Result<usize> {
    let entries = match fs::read_dir(tmp) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io("list directory", tmp, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.at("list directory", tmp)?;
        let is_ours = entry.file_name().to_str().is_some_and(|name| name.starts_with(PREFIX));
        if !is_ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        // Its owner is gone if its lock can be taken. Remove it while holding the lock, so that a
        // store that has just created it (and not yet locked it) notices and picks another name.
        let Some(_lock) = lock_if_abandoned(&path).at("lock directory", &path)? else { continue };
        match fs::remove_dir_all(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove directory", path, e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn live_directories_survive_clean_up_and_dead_ones_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        let live = TmpDir::create(tmp.path()).unwrap();
        let file = live.unique_path();
        fs::write(&file, b"being written").unwrap();
        // A directory whose owner died: same shape, no lock held.
        let dead = tmp.path().join("rebox-1-dead");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("blob-0"), b"partial").unwrap();
        // Not ours: never touched.
        let foreign = tmp.path().join("other-tool");
        fs::create_dir(&foreign).unwrap();

        assert_eq!(remove_abandoned(tmp.path()).unwrap(), 1);
        assert!(!dead.exists());
        assert!(file.exists(), "a live writer's file was removed");
        assert!(foreign.exists());

        let live_path = live.path().to_owned();
        drop(live);
        assert!(!live_path.exists(), "a dropped TmpDir removes its directory");
    }

    #[test]
    fn temporary_files_are_anonymous_where_supported_and_leave_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TmpDir::create(tmp.path()).unwrap();
        let temp = dir.create_file(0o444).unwrap();
        temp.file().write_all(b"content").unwrap();
        assert!(temp.path.is_none(), "O_TMPFILE works on this machine's filesystems");
        let [generation] = &generation_names(&dir)[..] else { panic!("one generation") };
        assert!(generation.starts_with("0-"), "{generation}");
        assert_eq!(
            fs::read_dir(dir.path().join(generation)).unwrap().count(),
            0,
            "an anonymous file has no name"
        );

        let target = File::open(tmp.path()).unwrap();
        temp.link_at(target.as_fd(), c"linked").unwrap();
        let linked = tmp.path().join("linked");
        assert_eq!(fs::read(&linked).unwrap(), b"content");
        assert_eq!(fs::metadata(&linked).unwrap().mode() & 0o7777, 0o444);
        let again = temp.link_at(target.as_fd(), c"linked").unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    }

    /// Generations of `files` files each.
    fn by_count(files: u64) -> GenerationPolicy {
        GenerationPolicy { files, slow_creation: Duration::MAX, min_files: files }
    }

    /// The names in the private directory of `dir`.
    fn generation_names(dir: &TmpDir) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// The numbers of the generations in the private directory of `dir`.
    fn generations(dir: &TmpDir) -> Vec<String> {
        numbers(&generation_names(dir))
    }

    /// The `<number>` of each `<number>-<nonce>` name.
    fn numbers(names: &[String]) -> Vec<String> {
        names.iter().map(|name| name.split_once('-').expect("<number>-<nonce>").0.to_owned()).collect()
    }

    #[test]
    fn generation_names_differ_between_stores_so_ext4_places_them_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (TmpDir::create(tmp.path()).unwrap(), TmpDir::create(tmp.path()).unwrap());
        let (a, b) = (generation_names(&a), generation_names(&b));
        assert_eq!((numbers(&a), numbers(&b)), (vec!["0".to_owned()], vec!["0".to_owned()]));
        assert_ne!(a, b, "ext4 starts a new directory's search for a group at a hash of its name");
    }

    #[test]
    fn anonymous_files_move_to_a_spread_new_generation_directory_every_so_often() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TmpDir::with_policy(tmp.path(), by_count(3)).unwrap();
        let handle = File::open(dir.path()).unwrap();
        assert!(placement::spreads_subdirectories(handle.as_fd()).unwrap(), "ext4 here has FS_TOPDIR_FL");
        let target = tempfile::tempdir_in(tmp.path()).unwrap();
        let target_dir = File::open(target.path()).unwrap();
        for n in 0..7 {
            let temp = dir.create_file(0o444).unwrap();
            assert_eq!(generations(&dir), [((n + 1) / 3).to_string()], "file {n}");
            temp.file().write_all(format!("file {n}").as_bytes()).unwrap();
            temp.link_at(target_dir.as_fd(), &CString::new(n.to_string()).unwrap()).unwrap();
        }
        assert_eq!(generations(&dir), ["2"], "each generation is removed once replaced");
        for n in 0..7 {
            assert_eq!(fs::read_to_string(target.path().join(n.to_string())).unwrap(), format!("file {n}"));
        }
    }

    #[test]
    fn concurrent_writers_never_lose_a_file_to_a_generation_being_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TmpDir::with_policy(tmp.path(), by_count(5)).unwrap();
        let target = tempfile::tempdir_in(tmp.path()).unwrap();
        let target_dir = File::open(target.path()).unwrap();
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (dir, target_dir) = (&dir, &target_dir);
                scope.spawn(move || {
                    for n in 0..200 {
                        let temp = dir.create_file(0o444).unwrap();
                        let name = CString::new(format!("{thread}-{n}")).unwrap();
                        temp.link_at(target_dir.as_fd(), &name).unwrap();
                    }
                });
            }
        });
        assert_eq!(fs::read_dir(target.path()).unwrap().count(), 800);
        let [last] = &generations(&dir)[..] else {
            panic!("one generation is left: {:?}", generations(&dir))
        };
        assert!((1..=160).contains(&last.parse::<u64>().unwrap()), "generation {last}");
    }

    #[test]
    fn a_slow_creation_ends_a_generation_early_but_not_before_its_minimum() {
        let tmp = tempfile::tempdir().unwrap();
        let always_slow = GenerationPolicy { files: 1000, slow_creation: Duration::ZERO, min_files: 2 };
        let dir = TmpDir::with_policy(tmp.path(), always_slow).unwrap();
        let never_slow =
            TmpDir::with_policy(tmp.path(), GenerationPolicy { slow_creation: Duration::MAX, ..always_slow });
        let never_slow = never_slow.unwrap();
        for _ in 0..6 {
            drop(dir.create_file(0o444).unwrap());
            drop(never_slow.create_file(0o444).unwrap());
        }
        assert_eq!(generations(&dir), ["3"]);
        assert_eq!(generations(&never_slow), ["0"]);
    }

    #[test]
    fn the_creation_average_starts_at_the_first_and_moves_a_sixteenth_toward_each_next() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TmpDir::create(tmp.path()).unwrap();
        let generation = dir.generation.read().unwrap();
        let us = Duration::from_micros;
        assert_eq!(generation.average_creation(us(32)), us(32));
        assert_eq!(generation.average_creation(us(48)), us(33));
        let mut settled = Duration::ZERO;
        for _ in 0..100 {
            settled = generation.average_creation(us(160));
        }
        assert!(settled > us(159) && settled <= us(160), "{settled:?}");
        assert!(GENERATIONS.is_full(GENERATIONS.min_files, settled));
        assert!(!GENERATIONS.is_full(GENERATIONS.min_files - 1, settled), "judged on too few files");
    }

    #[test]
    fn named_temporary_files_are_distinct_and_removed_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TmpDir::create(tmp.path()).unwrap();
        dir.anonymous.store(false, Ordering::Relaxed);
        let a = dir.create_file(0o444).unwrap();
        let b = dir.create_file(0o444).unwrap();
        let (a_path, b_path) = (a.path.clone().unwrap(), b.path.clone().unwrap());
        assert_ne!(a_path, b_path);
        assert_eq!(fs::metadata(&a_path).unwrap().mode() & 0o7777, 0o444);
        drop(a);
        assert!(!a_path.exists(), "a dropped named temporary file is removed");
    }
}

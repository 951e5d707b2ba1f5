//! The system calls the sandbox setup makes, behind a trait so unit tests can record them.
//!
//! [`LinuxSys`] is the real thing. Every method runs in the forked child, so each is a thin,
//! allocation-free wrapper over one system call (or a short fixed sequence) on C strings the
//! parent prepared.

use std::ffi::{CStr, c_int};

use nix::errno::Errno;

/// A raw file descriptor in the child (the child never owns Rust objects that close on drop).
pub(crate) type Fd = c_int;

/// How [`Sys::open_inside`] may follow symbolic links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Follow {
    /// Symlinks are followed but resolved as if `dirfd` were `/` (the root is hostile input).
    InRoot,
    /// No symlink at all is followed: used for the mount points the runner itself owns.
    Never,
}

/// The system calls the setup steps make. Paths are relative to a directory descriptor unless
/// named otherwise.
pub(crate) trait Sys {
    /// Writes `data` to an existing file (the id maps).
    fn write_file(&self, path: &CStr, data: &[u8]) -> Result<(), Errno>;
    /// `mount --make-rprivate /`.
    fn make_rprivate(&self) -> Result<(), Errno>;
    /// A detached copy of the mount at `path` (`open_tree(OPEN_TREE_CLONE)`), with its
    /// submounts when `recursive`.
    fn clone_mount(&self, dirfd: Fd, path: &CStr, recursive: bool) -> Result<Fd, Errno>;
    /// Sets mount attributes (`MOUNT_ATTR_*`) on a mount and, when `recursive`, its submounts.
    fn set_mount_attrs(&self, mount: Fd, attrs: u64, recursive: bool) -> Result<(), Errno>;
    /// A new detached filesystem mount (`fsopen`, `fsconfig`, `fsmount`); an option without a
    /// value is a flag.
    fn new_mount(&self, fstype: &CStr, options: &[(&CStr, Option<&CStr>)], attrs: u64) -> Result<Fd, Errno>;
    /// Attaches a detached mount onto the file or directory `target` refers to.
    fn attach(&self, mount: Fd, target: Fd) -> Result<(), Errno>;
    /// Attaches a detached mount onto a host path (used once, for the root).
    fn attach_at(&self, mount: Fd, path: &CStr) -> Result<(), Errno>;
    /// Opens `path` below `dirfd` as an `O_PATH` descriptor, never escaping `dirfd` and never
    /// following `/proc` magic links.
    fn open_inside(&self, dirfd: Fd, path: &CStr, follow: Follow) -> Result<Fd, Errno>;
    /// Creates a directory.
    fn mkdir_at(&self, dirfd: Fd, name: &CStr, mode: u32) -> Result<(), Errno>;
    /// Creates an empty regular file (never through a symlink).
    fn create_file_at(&self, dirfd: Fd, name: &CStr, mode: u32) -> Result<(), Errno>;
    /// Creates a symbolic link `name` pointing at `target`.
    fn symlink_at(&self, target: &CStr, dirfd: Fd, name: &CStr) -> Result<(), Errno>;
    /// Closes a descriptor.
    fn close(&self, fd: Fd);
    /// Sets the UTS namespace's host name.
    fn set_hostname(&self, name: &[u8]) -> Result<(), Errno>;
    /// Brings the loopback interface of the current network namespace up.
    fn loopback_up(&self) -> Result<(), Errno>;
    /// Makes the directory `dirfd` refers to the root (`pivot_root`) and detaches the old root.
    fn pivot_to(&self, dirfd: Fd) -> Result<(), Errno>;
    /// Changes the working directory.
    fn chdir(&self, path: &CStr) -> Result<(), Errno>;
    /// Removes one capability from the bounding set.
    fn drop_bounding_cap(&self, cap: u32) -> Result<(), Errno>;
    /// Clears the ambient set and the effective, permitted and inheritable sets.
    fn clear_caps(&self) -> Result<(), Errno>;
    /// Sets `no_new_privs`.
    fn set_no_new_privs(&self) -> Result<(), Errno>;
    /// Installs a seccomp filter.
    fn install_seccomp(&self, program: &[libc::sock_filter]) -> Result<(), Errno>;
}

/// The real system calls.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LinuxSys;

/// Turns a `-1`-on-error return into a `Result`.
fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

impl Sys for LinuxSys {
    fn write_file(&self, path: &CStr, data: &[u8]) -> Result<(), Errno> {
        // SAFETY: `path` is a valid C string; the flags create nothing.
        let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) }.into())?;
        let fd = fd as c_int;
        // SAFETY: `data` is a valid buffer of `data.len()` bytes and `fd` is open.
        let written = check(unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) } as libc::c_long);
        self.close(fd);
        match written? as usize {
            n if n == data.len() => Ok(()),
            _ => Err(Errno::EIO),
        }
    }

    fn make_rprivate(&self) -> Result<(), Errno> {
        // SAFETY: constant C strings; no data argument.
        let ret = unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        check(ret.into()).map(drop)
    }

    fn clone_mount(&self, dirfd: Fd, path: &CStr, recursive: bool) -> Result<Fd, Errno> {
        let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
        if recursive {
            flags |= libc::AT_RECURSIVE as libc::c_uint;
        }
        if path.is_empty() {
            flags |= libc::AT_EMPTY_PATH as libc::c_uint;
        }
        // SAFETY: open_tree(2) with a valid C string; it returns a new descriptor or -1.
        let ret = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
        check(ret).map(|fd| fd as Fd)
    }

    fn set_mount_attrs(&self, mount: Fd, attrs: u64, recursive: bool) -> Result<(), Errno> {
        let attr = libc::mount_attr { attr_set: attrs, attr_clr: 0, propagation: 0, userns_fd: 0 };
        let mut flags = libc::AT_EMPTY_PATH;
        if recursive {
            flags |= libc::AT_RECURSIVE;
        }
        // SAFETY: mount_setattr(2) reads `attr` (size given) and an empty C string.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                mount,
                c"".as_ptr(),
                flags,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        check(ret).map(drop)
    }

    fn new_mount(&self, fstype: &CStr, options: &[(&CStr, Option<&CStr>)], attrs: u64) -> Result<Fd, Errno> {
        // SAFETY: fsopen(2) with a valid C string.
        let fs = check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) })?;
        let fs = fs as Fd;
        let configure = |command: libc::c_uint, key: *const libc::c_char, value: *const libc::c_char| {
            // SAFETY: fsconfig(2) on our fs context with valid (or null) C strings.
            check(unsafe { libc::syscall(libc::SYS_fsconfig, fs, command, key, value, 0) })
        };
        let result = (|| {
            for (key, value) in options {
                match value {
                    Some(value) => configure(libc::FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr())?,
                    None => configure(libc::FSCONFIG_SET_FLAG, key.as_ptr(), std::ptr::null())?,
                };
            }
            configure(libc::FSCONFIG_CMD_CREATE, std::ptr::null(), std::ptr::null())?;
            // SAFETY: fsmount(2) on the configured context; returns a new descriptor or -1.
            check(unsafe { libc::syscall(libc::SYS_fsmount, fs, libc::FSMOUNT_CLOEXEC, attrs) })
        })();
        self.close(fs);
        result.map(|fd| fd as Fd)
    }

    fn attach(&self, mount: Fd, target: Fd) -> Result<(), Errno> {
        let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
        // SAFETY: move_mount(2) between two descriptors with empty C string paths.
        let ret =
            unsafe { libc::syscall(libc::SYS_move_mount, mount, c"".as_ptr(), target, c"".as_ptr(), flags) };
        check(ret).map(drop)
    }

    fn attach_at(&self, mount: Fd, path: &CStr) -> Result<(), Errno> {
        // SAFETY: move_mount(2) from a descriptor onto a valid C string path.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mount,
                c"".as_ptr(),
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        check(ret).map(drop)
    }

    fn open_inside(&self, dirfd: Fd, path: &CStr, follow: Follow) -> Result<Fd, Errno> {
        let mut resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        if follow == Follow::Never {
            resolve |= libc::RESOLVE_NO_SYMLINKS;
        }
        // SAFETY: `open_how` is plain data; zeroed is a valid value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
        how.resolve = resolve;
        // SAFETY: openat2(2) reads `how` (size given) and a valid C string.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        check(ret).map(|fd| fd as Fd)
    }

    fn mkdir_at(&self, dirfd: Fd, name: &CStr, mode: u32) -> Result<(), Errno> {
        // SAFETY: mkdirat(2) with a valid C string.
        check(unsafe { libc::mkdirat(dirfd, name.as_ptr(), mode) }.into()).map(drop)
    }

    fn create_file_at(&self, dirfd: Fd, name: &CStr, mode: u32) -> Result<(), Errno> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: openat(2) with a valid C string; O_EXCL never follows a symlink.
        let fd = check(unsafe { libc::openat(dirfd, name.as_ptr(), flags, mode) }.into())?;
        self.close(fd as Fd);
        Ok(())
    }

    fn symlink_at(&self, target: &CStr, dirfd: Fd, name: &CStr) -> Result<(), Errno> {
        // SAFETY: symlinkat(2) with valid C strings.
        check(unsafe { libc::symlinkat(target.as_ptr(), dirfd, name.as_ptr()) }.into()).map(drop)
    }

    fn close(&self, fd: Fd) {
        // SAFETY: the caller owns `fd` and never uses it again.
        unsafe { libc::close(fd) };
    }

    fn set_hostname(&self, name: &[u8]) -> Result<(), Errno> {
        // SAFETY: sethostname(2) reads `name.len()` bytes.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }.into()).map(drop)
    }

    fn loopback_up(&self) -> Result<(), Errno> {
        crate::net::loopback_up()
    }

    fn pivot_to(&self, dirfd: Fd) -> Result<(), Errno> {
        // SAFETY: fchdir(2) on a descriptor we hold.
        check(unsafe { libc::fchdir(dirfd) }.into())?;
        // `pivot_root(".", ".")` stacks the old root on top of the new one, so unmounting "."
        // right after detaches the old root without needing a directory for it.
        // SAFETY: pivot_root(2) with constant C strings.
        check(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) })?;
        // SAFETY: umount2(2) with a constant C string.
        check(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) }.into())?;
        self.chdir(c"/")
    }

    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        // SAFETY: chdir(2) with a valid C string.
        check(unsafe { libc::chdir(path.as_ptr()) }.into()).map(drop)
    }

    fn drop_bounding_cap(&self, cap: u32) -> Result<(), Errno> {
        // SAFETY: prctl(2) with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) }.into()).map(drop)
    }

    fn clear_caps(&self) -> Result<(), Errno> {
        crate::caps::clear_all()
    }

    fn set_no_new_privs(&self) -> Result<(), Errno> {
        // SAFETY: prctl(2) with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into()).map(drop)
    }

    fn install_seccomp(&self, program: &[libc::sock_filter]) -> Result<(), Errno> {
        let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
        // SAFETY: the kernel copies the `len` instructions `prog` points at during the call.
        let ret = unsafe {
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog)
        };
        check(ret.into()).map(drop)
    }
}

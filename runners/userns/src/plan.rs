//! Everything the child needs, prepared in the parent: C strings, pointer arrays, id maps,
//! the seccomp program. The child only reads it (it must not allocate: see the crate docs).

use std::ffi::{CString, OsStr, c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rebox_runner_spec::{Personality, Spec};

use crate::error::{Failure, Step, UsernsError};
use crate::paths::InsidePath;
use crate::rootfs::MountPoints;
use crate::terminal::Session;
use crate::{dev, procfs};

/// A bind mount of a host path into the sandbox.
#[derive(Debug)]
pub(crate) struct BindPlan {
    pub source: CString,
    pub target: InsidePath,
    pub writable: bool,
    /// Whether the source is a directory (else the target is created as a file).
    pub is_dir: bool,
}

/// The filesystem side of the setup.
#[derive(Debug)]
pub(crate) struct MountPlan {
    /// The staged root on the host (canonical).
    pub root: CString,
    pub binds: Vec<BindPlan>,
    pub cwd: InsidePath,
    pub hostname: Vec<u8>,
    /// Whether `lo` must be brought up (a fresh network namespace).
    pub loopback: bool,
    /// `/proc`, `/dev`, `/tmp`.
    pub points: MountPoints,
}

/// `/proc/self/{setgroups,uid_map,gid_map}` contents.
#[derive(Debug)]
pub(crate) struct IdMaps {
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
}

/// The command: what the last child does before `execve`.
#[derive(Debug)]
pub(crate) struct ExecPlan {
    /// Where `argv[0]` may be, in `PATH` order.
    pub candidates: Vec<CString>,
    _argv: Vec<CString>,
    _env: Vec<CString>,
    /// Null-terminated pointers into `_argv` and `_env` (whose heap buffers never move).
    pub argv: Vec<*const c_char>,
    pub envp: Vec<*const c_char>,
    /// The line a shell would print when the command doesn't exist (exit 127)...
    pub not_found: Vec<u8>,
    /// ...or exists but cannot be executed (exit 126).
    pub denied: Vec<u8>,
    /// Descriptors to install as 0, 1, 2 (`None`: inherited).
    pub stdio: [Option<c_int>; 3],
    /// What the command does about its session and the caller's terminal.
    pub session: Session,
    /// `personality(2)` argument, if not native.
    pub personality: Option<libc::c_ulong>,
}

/// The whole plan.
#[derive(Debug)]
pub(crate) struct Plan {
    pub ids: IdMaps,
    pub mounts: MountPlan,
    pub exec: ExecPlan,
    /// Capability numbers the kernel supports (all of them are dropped).
    pub caps: Vec<u32>,
    pub seccomp: Vec<libc::sock_filter>,
    /// Descriptors the sandbox's init keeps (sorted); it closes every other one it inherited.
    pub keep_fds: Vec<c_int>,
    /// The write end of the report pipe.
    pub report_fd: c_int,
    /// A pidfd of the runner's process, to notice it died before the death signal was armed.
    pub runner_pidfd: c_int,
}

fn c_string(what: &str, bytes: &[u8]) -> Result<CString, UsernsError> {
    CString::new(bytes).map_err(|_| UsernsError::InvalidSpec(format!("{what} contains a NUL byte")))
}

impl Plan {
    /// Checks `spec` and prepares it. `stdio` are the descriptors [`crate::stdio`] opened;
    /// `keep_fds` and `report_fd` are filled in once the pipe exists.
    pub(crate) fn new(spec: &Spec, stdio: [Option<c_int>; 3], session: Session) -> Result<Self, UsernsError> {
        let invalid = |message: String| UsernsError::InvalidSpec(message);
        let root = std::fs::canonicalize(&spec.root).map_err(|source| UsernsError::Host {
            what: format!("resolve the sandbox root {}", spec.root.display()),
            source,
        })?;
        if !root.is_dir() {
            return Err(invalid(format!("the sandbox root {} is not a directory", root.display())));
        }
        let mut binds = Vec::with_capacity(spec.mounts.len());
        for mount in &spec.mounts {
            if !mount.target.is_absolute() {
                return Err(invalid(format!("bind mount target {} is not absolute", mount.target.display())));
            }
            let metadata = std::fs::metadata(&mount.source).map_err(|source| UsernsError::Host {
                what: format!("bind mount source {}", mount.source.display()),
                source,
            })?;
            binds.push(BindPlan {
                source: c_string("a bind mount source", mount.source.as_os_str().as_bytes())?,
                target: InsidePath::parse(&mount.target)
                    .map_err(|e| invalid(format!("bind mount target {e}")))?,
                writable: mount.writable,
                is_dir: metadata.is_dir(),
            });
        }
        let hostname = spec.hostname.as_bytes().to_vec();
        if hostname.len() > 64 || hostname.contains(&0) {
            return Err(invalid(format!(
                "host name {:?} is longer than 64 bytes or has a NUL",
                spec.hostname
            )));
        }
        let mounts = MountPlan {
            root: c_string("the sandbox root", root.as_os_str().as_bytes())?,
            binds,
            cwd: InsidePath::parse(&spec.cwd).map_err(|e| invalid(format!("working directory {e}")))?,
            hostname,
            loopback: !spec.network,
            points: MountPoints::new(),
        };
        // SAFETY: geteuid(2) and getegid(2) cannot fail.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let ids = IdMaps {
            uid_map: format!("{} {euid} 1\n", spec.uid).into_bytes(),
            gid_map: format!("{} {egid} 1\n", spec.gid).into_bytes(),
        };
        let exec = ExecPlan::new(spec, stdio, session)?;
        Ok(Plan {
            ids,
            mounts,
            exec,
            caps: crate::caps::supported(),
            seccomp: crate::seccomp::tiocsti_filter(),
            keep_fds: Vec::new(),
            report_fd: -1,
            runner_pidfd: -1,
        })
    }

    /// Says what a failed step was doing, naming its path.
    pub(crate) fn describe(&self, failure: &Failure) -> String {
        let item = failure.item as usize;
        let root = String::from_utf8_lossy(self.mounts.root.as_bytes());
        let bind = self.mounts.binds.get(item);
        let bind_source = bind.map(|b| String::from_utf8_lossy(b.source.as_bytes()).into_owned());
        let bind_target = bind.map(|b| b.target.display.clone());
        match failure.step {
            Step::IdMap => format!(
                "write {}",
                ["/proc/self/setgroups", "/proc/self/uid_map", "/proc/self/gid_map"][item.min(2)]
            ),
            Step::MakePrivate => "make the mount tree private".to_owned(),
            Step::BindRoot => format!("bind-mount the root {root}"),
            Step::MountPoint => format!("create the mount point /{}", ["proc", "dev", "tmp"][item.min(2)]),
            Step::MountProc => "mount /proc".to_owned(),
            Step::ProcReadOnly => {
                format!("make /proc/{} read-only", procfs::READ_ONLY.get(item).unwrap_or(&"?"))
            }
            Step::MountDev => format!("mount /dev/{}", dev::PARTS.get(item).unwrap_or(&"?")),
            Step::DevNode => format!("bind-mount /dev/{}", dev::NODES.get(item).unwrap_or(&"?")),
            Step::MountTmp => "mount /tmp".to_owned(),
            Step::Bind => format!(
                "bind-mount {} onto {}",
                bind_source.unwrap_or_default(),
                bind_target.unwrap_or_default()
            ),
            Step::BindTarget => format!("create the bind mount target {}", bind_target.unwrap_or_default()),
            Step::Hostname => {
                format!("set the host name to {:?}", String::from_utf8_lossy(&self.mounts.hostname))
            }
            Step::Loopback => "bring up lo".to_owned(),
            Step::Cwd => format!("create the working directory {}", self.mounts.cwd.display),
            Step::Pivot => format!("pivot into {root}"),
            Step::DropCaps => format!("drop capability {item}"),
            Step::NoNewPrivs => "set no_new_privs".to_owned(),
            Step::Seccomp => "install the seccomp filter".to_owned(),
            Step::Fork => "fork the command".to_owned(),
            Step::Stdio => format!("redirect fd {item} of the command"),
            Step::Session => "start a session for the command".to_owned(),
            Step::Foreground => "make the command the terminal's foreground job".to_owned(),
            Step::Personality => "set the 32-bit personality".to_owned(),
            Step::Exec => format!(
                "execute {}",
                self.exec.candidates.get(item).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
            ),
        }
    }
}

impl ExecPlan {
    fn new(spec: &Spec, stdio: [Option<c_int>; 3], session: Session) -> Result<Self, UsernsError> {
        let Some(program) = spec.argv.first() else {
            return Err(UsernsError::InvalidSpec("the command (argv) is empty".to_owned()));
        };
        if program.is_empty() {
            return Err(UsernsError::InvalidSpec("the command's argv[0] is empty".to_owned()));
        }
        let argv =
            spec.argv.iter().map(|a| c_string("an argument", a.as_bytes())).collect::<Result<Vec<_>, _>>()?;
        let mut env = Vec::with_capacity(spec.env.len());
        for (name, value) in &spec.env {
            if name.is_empty() || name.as_bytes().contains(&b'=') {
                return Err(UsernsError::InvalidSpec(format!(
                    "environment variable name {name:?} is empty or has '='"
                )));
            }
            let mut entry = name.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            env.push(c_string("an environment variable", &entry)?);
        }
        let path = spec.env.iter().rev().find(|(name, _)| name == "PATH").map(|(_, value)| value.as_os_str());
        let candidates = candidates(program, path)
            .iter()
            .map(|c| c_string("argv[0]", c.as_os_str().as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let shown = program.to_string_lossy();
        let pointers = |strings: &[CString]| {
            strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect::<Vec<_>>()
        };
        Ok(Self {
            candidates,
            argv: pointers(&argv),
            envp: pointers(&env),
            _argv: argv,
            _env: env,
            not_found: format!("rebox: command '{shown}' not found in the sandbox\n").into_bytes(),
            denied: format!("rebox: command '{shown}': permission denied in the sandbox\n").into_bytes(),
            stdio,
            session,
            personality: match spec.personality {
                Personality::Native => None,
                Personality::Linux32 => Some(crate::exec::PER_LINUX32),
            },
        })
    }
}

/// The paths `execvpe` would try for `program`: itself when it has a `/`, else each `PATH`
/// entry joined with it (an empty entry is the working directory; no `PATH`: `/bin:/usr/bin`).
pub(crate) fn candidates(program: &OsStr, path: Option<&OsStr>) -> Vec<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return vec![PathBuf::from(program)];
    }
    let path = path.unwrap_or(OsStr::new("/bin:/usr/bin"));
    path.as_bytes()
        .split(|byte| *byte == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
            dir.join(program)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::path::PathBuf;

    use super::candidates;

    #[test]
    fn a_program_with_a_slash_is_used_as_is() {
        assert_eq!(candidates(OsStr::new("./run"), Some(OsStr::new("/bin"))), [PathBuf::from("./run")]);
        assert_eq!(candidates(OsStr::new("/bin/sh"), None), [PathBuf::from("/bin/sh")]);
    }

    #[test]
    fn a_bare_name_is_searched_in_path_order() {
        let found = candidates(OsStr::new("cc"), Some(OsStr::new("/usr/bin::/opt/bin")));
        assert_eq!(
            found,
            [PathBuf::from("/usr/bin/cc"), PathBuf::from("./cc"), PathBuf::from("/opt/bin/cc")]
        );
    }

    #[test]
    fn without_path_the_default_search_path_is_used() {
        assert_eq!(
            candidates(OsStr::new("sh"), None),
            [PathBuf::from("/bin/sh"), PathBuf::from("/usr/bin/sh")]
        );
    }
}

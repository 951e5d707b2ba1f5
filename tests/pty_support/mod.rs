//! Driving a program on a real pseudo-terminal, as a person at a terminal would: the program is a
//! session leader with the terminal as its controlling terminal (so it and its children get job
//! control, Ctrl-C and window sizes from it); the test types into the master side and waits for
//! what appears there.

#![allow(dead_code, reason = "each test crate uses a different part of this support module")]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A caller as BuildStream or a script is: it runs its arguments in its own process group, then
/// reports what it finds of its terminal: whether the modes are unchanged, the exit status, and
/// whether it can still read from the terminal (it can't when left in the background).
pub const CALLER: &str = r#"
before=$(stty -g)
"$@"
rc=$?
if [ "$(stty -g)" = "$before" ]; then echo CALLER-MODES-SAME; else echo CALLER-MODES-CHANGED; fi
echo "CALLER-RC=$rc"
if read line; then echo "CALLER-READ:$line"; else echo CALLER-CANNOT-READ; fi
"#;

/// How long anything may take to appear.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A program running on a pseudo-terminal, and everything it has written there.
#[derive(Debug)]
pub struct Terminal {
    master: File,
    child: Child,
    screen: Arc<(Mutex<Vec<u8>>, Condvar)>,
    /// Where the next [`Terminal::expect`] starts looking.
    cursor: usize,
}

impl Terminal {
    /// Starts `command` as the session leader of a new pseudo-terminal, 24 rows by 80 columns.
    pub fn spawn(mut command: Command) -> Terminal {
        let size = nix::pty::Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = nix::pty::openpty(Some(&size), None).expect("open a pseudo-terminal");
        let slave = |pty: &OwnedFd| Stdio::from(pty.try_clone().unwrap());
        command.stdin(slave(&pty.slave)).stdout(slave(&pty.slave)).stderr(slave(&pty.slave));
        // SAFETY: setsid(2) and ioctl(2) only, between fork and exec: the child leads a new
        // session whose controlling terminal is its stdin, the slave.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start the program on the terminal");
        drop(pty.slave);
        let master = File::from(pty.master);
        let screen = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let (mut reader, shared) = (master.try_clone().unwrap(), Arc::clone(&screen));
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // Ends with EIO once every holder of the slave has closed it.
            while let Ok(read @ 1..) = reader.read(&mut buffer) {
                shared.0.lock().unwrap().extend_from_slice(&buffer[..read]);
                shared.1.notify_all();
            }
        });
        Terminal { master, child, screen, cursor: 0 }
    }

    /// [`CALLER`] running `args` (a program and its arguments) on a new terminal.
    pub fn caller<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Terminal {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(CALLER).arg("caller").args(args);
        Terminal::spawn(command)
    }

    /// Has the command on the terminal leave it without echo and line editing and exit with
    /// `code`, then checks that [`CALLER`] got the exit status and its terminal back as it was
    /// (modes unchanged, still able to read), and exited.
    pub fn exit_and_check_caller(mut self, code: u8) {
        self.send(&format!("stty -echo -icanon; exit {code}\n"));
        self.expect("CALLER-MODES-SAME");
        self.expect(&format!("CALLER-RC={code}"));
        self.send("hello\n");
        self.expect("CALLER-READ:hello");
        assert!(self.wait().success());
    }

    /// Types `text` (control characters included: "\x03" is Ctrl-C).
    pub fn send(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).expect("type into the terminal");
    }

    /// Waits until `needle` appears after what earlier calls matched, and moves past it; panics
    /// with everything on the screen if it doesn't appear in time.
    pub fn expect(&mut self, needle: &str) {
        if !self.appears(needle, PATIENCE) {
            panic!(
                "{needle:?} did not appear on the terminal within {PATIENCE:?}; the screen:\n{}",
                self.screen()
            );
        }
    }

    /// Whether `needle` appears within `patience` after what earlier calls matched (then moves
    /// past it).
    pub fn appears(&mut self, needle: &str, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        let (lock, changed) = &*self.screen;
        let mut screen = lock.lock().unwrap();
        loop {
            let unseen = &screen[self.cursor.min(screen.len())..];
            if let Some(at) = unseen.windows(needle.len()).position(|w| w == needle.as_bytes()) {
                self.cursor += at + needle.len();
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            screen = changed.wait_timeout(screen, left).unwrap().0;
        }
    }

    /// Everything written to the terminal so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.0.lock().unwrap()).into_owned()
    }

    /// Sets the terminal's window size (the kernel sends SIGWINCH to its foreground group).
    pub fn resize(&self, rows: u16, cols: u16) {
        let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ on the master we own, with a winsize on the stack.
        let set = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(set, 0, "resize the terminal: {}", std::io::Error::last_os_error());
    }

    /// Waits for the program to exit (killing it after [`PATIENCE`]).
    pub fn wait(mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the program did not exit; the screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    /// Ends every process of the terminal's session, not only its leader: a failed test must not
    /// leave a stopped job behind. SIGTERM (and SIGCONT, for stopped ones) first, so a runner
    /// removes its stage; SIGKILL for what is left after a while.
    fn drop(&mut self) {
        let session = self.child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        for signal in [libc::SIGTERM, libc::SIGCONT] {
            for pid in session_members(session) {
                // SAFETY: kill(2) of a process of the session this test created.
                unsafe { libc::kill(pid, signal) };
            }
        }
        while !session_members(session).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in session_members(session) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The processes whose session is `session` (field 6 of `/proc/PID/stat`).
fn session_members(session: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The command name (field 2) may hold spaces: count from after its closing paren.
            let fields: Vec<&str> =
                stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
            fields.get(3).and_then(|sid| sid.parse::<i32>().ok()) == Some(session)
        })
        .collect()
}

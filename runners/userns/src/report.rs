//! The report pipe from the sandbox to the runner: fixed-size records (atomic writes, well under
//! `PIPE_BUF`) carrying a setup [`Failure`], or the resources the action used and then the
//! command's wait status. Init sends the status last, once every other process of the sandbox
//! is dead and reaped: for the runner, that record means the action is over.

use std::ffi::c_int;
use std::os::fd::OwnedFd;

use nix::errno::Errno;

use crate::error::{Failure, Step};

const FAILURE: u32 = 1;
const STATUS: u32 = 2;
const USAGE: u32 = 3;
const STOPPED: u32 = 4;

/// One record on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
struct Record {
    kind: u32,
    step: u32,
    item: u32,
    _pad: u32,
    value: i64,
}

const RECORD: usize = std::mem::size_of::<Record>();

/// What the sandbox said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Message {
    /// A setup step failed.
    Failure(Failure),
    /// The command ended with this wait status, and nothing else of the sandbox runs any more.
    Status(i32),
    /// One figure of the resources the sandbox's processes used.
    Usage(UsageField, i64),
    /// The command, the terminal's foreground job, was stopped (Ctrl-Z).
    Stopped,
}

/// The figures of `getrusage(RUSAGE_CHILDREN)` that cross the pipe (times in microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UsageField {
    UserMicros,
    SystemMicros,
    MaxRssKib,
    MinorFaults,
    MajorFaults,
    VoluntarySwitches,
    InvoluntarySwitches,
}

impl UsageField {
    const ALL: [UsageField; 7] = [
        UsageField::UserMicros,
        UsageField::SystemMicros,
        UsageField::MaxRssKib,
        UsageField::MinorFaults,
        UsageField::MajorFaults,
        UsageField::VoluntarySwitches,
        UsageField::InvoluntarySwitches,
    ];
}

fn send(fd: c_int, record: Record) {
    // SAFETY: writes the bytes of a plain `repr(C)` value; a failure (the runner is gone) leaves
    // nobody to tell.
    unsafe { libc::write(fd, (&record as *const Record).cast(), RECORD) };
}

/// Child side: reports a failed step.
pub(crate) fn send_failure(fd: c_int, failure: Failure) {
    let (step, item, value) = (failure.step as u32, failure.item, i64::from(failure.errno as i32));
    send(fd, Record { kind: FAILURE, step, item, _pad: 0, value });
}

/// Child side: reports the command's wait status (last: see the module documentation).
pub(crate) fn send_status(fd: c_int, status: i32) {
    send(fd, Record { kind: STATUS, step: 0, item: 0, _pad: 0, value: i64::from(status) });
}

/// Child side: reports that the command was stopped.
pub(crate) fn send_stopped(fd: c_int) {
    send(fd, Record { kind: STOPPED, step: 0, item: 0, _pad: 0, value: 0 });
}

/// Child side: reports `usage` (of every process init reaped), one record a figure.
pub(crate) fn send_usage(fd: c_int, usage: &libc::rusage) {
    let micros = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    let values = [
        micros(usage.ru_utime),
        micros(usage.ru_stime),
        usage.ru_maxrss,
        usage.ru_minflt,
        usage.ru_majflt,
        usage.ru_nvcsw,
        usage.ru_nivcsw,
    ];
    for (index, value) in values.into_iter().enumerate() {
        send(fd, Record { kind: USAGE, step: 0, item: index as u32, _pad: 0, value });
    }
}

/// Parent side: reads whatever records have arrived (the descriptor is non-blocking).
#[derive(Debug, Default)]
pub(crate) struct Reader {
    pending: Vec<u8>,
}

impl Reader {
    /// Reads what is available, returning the complete records.
    pub(crate) fn read(&mut self, fd: &OwnedFd) -> Vec<Message> {
        let mut buffer = [0u8; RECORD * 16];
        loop {
            match nix::unistd::read(fd, &mut buffer) {
                Ok(0) | Err(Errno::EAGAIN) => break,
                Ok(n) => self.pending.extend_from_slice(&buffer[..n]),
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        let complete = self.pending.len() / RECORD * RECORD;
        let messages = self.pending[..complete].chunks_exact(RECORD).filter_map(decode).collect();
        self.pending.drain(..complete);
        messages
    }
}

fn decode(bytes: &[u8]) -> Option<Message> {
    let word = |i: usize| u32::from_ne_bytes(bytes[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    let value = i64::from_ne_bytes(bytes[16..24].try_into().expect("8 bytes"));
    match word(0) {
        FAILURE => Some(Message::Failure(Failure {
            step: Step::from_code(word(1))?,
            item: word(2),
            errno: Errno::from_raw(value as i32),
        })),
        STATUS => Some(Message::Status(value as i32)),
        USAGE => Some(Message::Usage(*UsageField::ALL.get(word(2) as usize)?, value)),
        STOPPED => Some(Message::Stopped),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use nix::errno::Errno;
    use nix::fcntl::OFlag;

    use super::{Message, Reader, UsageField, send_failure, send_status, send_stopped, send_usage};
    use crate::error::{Failure, Step};

    #[test]
    fn records_cross_the_pipe_in_order() {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        let mut reader = Reader::default();
        assert_eq!(reader.read(&read), []);
        let failure = Failure::new(Step::Bind, 3, Errno::ENOENT);
        send_failure(write.as_raw_fd(), failure);
        send_stopped(write.as_raw_fd());
        send_status(write.as_raw_fd(), 0x0100);
        let messages = [Message::Failure(failure), Message::Stopped, Message::Status(0x0100)];
        assert_eq!(reader.read(&read), messages);

        // SAFETY: `rusage` is plain data.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        usage.ru_utime.tv_sec = 3;
        usage.ru_utime.tv_usec = 5;
        usage.ru_maxrss = 1 << 40;
        send_usage(write.as_raw_fd(), &usage);
        let got = reader.read(&read);
        assert_eq!(got.len(), 7);
        assert_eq!(got[0], Message::Usage(UsageField::UserMicros, 3_000_005));
        assert_eq!(got[2], Message::Usage(UsageField::MaxRssKib, 1 << 40));
    }
}

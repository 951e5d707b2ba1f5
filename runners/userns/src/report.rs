//! The report pipe from the sandbox to the runner: fixed-size records (atomic writes, well under
//! `PIPE_BUF`) carrying a setup [`Failure`] or the command's wait status.

use std::ffi::c_int;
use std::os::fd::OwnedFd;

use nix::errno::Errno;

use crate::error::{Failure, Step};

const FAILURE: u32 = 1;
const STATUS: u32 = 2;

/// One record on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
struct Record {
    kind: u32,
    step: u32,
    item: u32,
    value: i32,
}

const RECORD: usize = std::mem::size_of::<Record>();

/// What the sandbox said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Message {
    /// A setup step failed.
    Failure(Failure),
    /// The command ended with this wait status.
    Status(i32),
}

fn send(fd: c_int, record: Record) {
    // SAFETY: writes the bytes of a plain `repr(C)` value; a failure (the runner is gone) leaves
    // nobody to tell.
    unsafe { libc::write(fd, (&record as *const Record).cast(), RECORD) };
}

/// Child side: reports a failed step.
pub(crate) fn send_failure(fd: c_int, failure: Failure) {
    send(
        fd,
        Record { kind: FAILURE, step: failure.step as u32, item: failure.item, value: failure.errno as i32 },
    );
}

/// Child side: reports the command's wait status.
pub(crate) fn send_status(fd: c_int, status: i32) {
    send(fd, Record { kind: STATUS, step: 0, item: 0, value: status });
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
    match word(0) {
        FAILURE => Some(Message::Failure(Failure {
            step: Step::from_code(word(1))?,
            item: word(2),
            errno: Errno::from_raw(word(3) as i32),
        })),
        STATUS => Some(Message::Status(word(3) as i32)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use nix::errno::Errno;
    use nix::fcntl::OFlag;

    use super::{Message, Reader, send_failure, send_status};
    use crate::error::{Failure, Step};

    #[test]
    fn records_cross_the_pipe_in_order() {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        let mut reader = Reader::default();
        assert_eq!(reader.read(&read), []);
        let failure = Failure::new(Step::Bind, 3, Errno::ENOENT);
        send_failure(write.as_raw_fd(), failure);
        send_status(write.as_raw_fd(), 0x0100);
        assert_eq!(reader.read(&read), [Message::Failure(failure), Message::Status(0x0100)]);
    }
}

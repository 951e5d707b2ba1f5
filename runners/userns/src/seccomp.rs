//! A seccomp filter refusing the terminal ioctls that inject input: `TIOCSTI` (push a byte into
//! a terminal's input queue) and `TIOCLINUX` (which can do the same through selection pasting).
//! With them a command could type into the caller's shell when the terminal is passed through
//! (`bst shell`).
//!
//! The program is written out by hand rather than with `seccompiler` because seccompiler kills
//! any process of a foreign architecture, and x86-32 actions (the `Linux32` personality) run
//! i386 binaries whose system calls arrive with `AUDIT_ARCH_I386`: those must be filtered too,
//! not killed. Everything else is allowed.

use libc::{BPF_ABS, BPF_ALU, BPF_AND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, sock_filter};

#[cfg(target_arch = "x86_64")]
mod arch {
    /// `AUDIT_ARCH_X86_64`.
    pub const NATIVE: u32 = 0xC000_003E;
    /// `ioctl` for x86-64, and for x32 once its marker bit is masked off.
    pub const NATIVE_IOCTL: [u32; 2] = [16, 514];
    /// `AUDIT_ARCH_I386`.
    pub const COMPAT: u32 = 0x4000_0003;
    /// `ioctl` for i386.
    pub const COMPAT_IOCTL: u32 = 54;
}

#[cfg(target_arch = "aarch64")]
mod arch {
    /// `AUDIT_ARCH_AARCH64`.
    pub const NATIVE: u32 = 0xC000_00B7;
    /// `ioctl` for arm64 (twice: the table has one entry per x86 ABI).
    pub const NATIVE_IOCTL: [u32; 2] = [29, 29];
    /// `AUDIT_ARCH_ARM`.
    pub const COMPAT: u32 = 0x4000_0028;
    /// `ioctl` for 32-bit arm.
    pub const COMPAT_IOCTL: u32 = 54;
}

/// The x32 ABI marks its system call numbers with this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// `offsetof(struct seccomp_data, arch)`.
const ARCH_OFFSET: u32 = 4;
/// `offsetof(struct seccomp_data, nr)`.
const NR_OFFSET: u32 = 0;
/// `offsetof(struct seccomp_data, args[1])`: the ioctl request (its low 32 bits, little-endian).
const REQUEST_OFFSET: u32 = 24;

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jump(k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code: (BPF_JMP | BPF_JEQ | BPF_K) as u16, jt, jf, k }
}

/// The filter: `ioctl(fd, TIOCSTI | TIOCLINUX, ...)` fails with `EPERM`, everything else runs.
/// Jump offsets count instructions after the jump; each line says where it lands.
pub(crate) fn tiocsti_filter() -> Vec<sock_filter> {
    let load = BPF_LD | BPF_W | BPF_ABS;
    vec![
        /* 0 */ stmt(load, ARCH_OFFSET),
        /* 1 */ jump(arch::NATIVE, 0, 4), // native: 2, else: 6
        /* 2 */ stmt(load, NR_OFFSET),
        /* 3 */ stmt(BPF_ALU | BPF_AND | BPF_K, !X32_SYSCALL_BIT),
        /* 4 */ jump(arch::NATIVE_IOCTL[0], 4, 0), // ioctl: 9, else: 5
        /* 5 */ jump(arch::NATIVE_IOCTL[1], 3, 6), // ioctl: 9, else: allow
        /* 6 */ jump(arch::COMPAT, 0, 5), // compat: 7, else: allow
        /* 7 */ stmt(load, NR_OFFSET),
        /* 8 */ jump(arch::COMPAT_IOCTL, 0, 3), // ioctl: 9, else: allow
        /* 9 */ stmt(load, REQUEST_OFFSET),
        /* 10 */ jump(libc::TIOCSTI as u32, 2, 0), // deny, else: 11
        /* 11 */ jump(libc::TIOCLINUX as u32, 1, 0), // deny, else: allow
        /* 12 */ stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
        /* 13 */ stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ]
}

#[cfg(test)]
mod tests {
    use super::tiocsti_filter;
    use crate::sys::{LinuxSys, Sys};

    /// Every jump must land inside the program (the kernel would refuse it otherwise, but a
    /// jump landing on the wrong instruction is only caught by behaviour: see the next test).
    #[test]
    fn jumps_stay_inside_the_program() {
        let program = tiocsti_filter();
        for (pc, insn) in program.iter().enumerate() {
            if insn.code as u32 & 0x07 == libc::BPF_JMP {
                assert!(pc + 1 + (insn.jt as usize) < program.len(), "jt of {pc}");
                assert!(pc + 1 + (insn.jf as usize) < program.len(), "jf of {pc}");
            }
        }
    }

    /// In a forked child with the filter installed, TIOCSTI and TIOCLINUX fail with EPERM while
    /// another ioctl on the same descriptor (FIONREAD on a pipe) still works.
    #[test]
    fn the_kernel_refuses_tiocsti_and_allows_other_ioctls() {
        let program = tiocsti_filter();
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills the two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only makes system calls on data prepared before the fork, then exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = (|| {
                if LinuxSys.set_no_new_privs().is_err() || LinuxSys.install_seccomp(&program).is_err() {
                    return 10;
                }
                let byte = b'x';
                // SAFETY: the ioctls read one byte or write one int, both valid here.
                unsafe {
                    if libc::ioctl(fds[0], libc::TIOCSTI, &byte) != -1
                        || *libc::__errno_location() != libc::EPERM
                    {
                        return 11;
                    }
                    if libc::ioctl(fds[0], libc::TIOCLINUX, &byte) != -1
                        || *libc::__errno_location() != libc::EPERM
                    {
                        return 12;
                    }
                    let mut available: libc::c_int = -1;
                    if libc::ioctl(fds[0], libc::FIONREAD, &mut available) != 0 || available != 0 {
                        return 13;
                    }
                }
                0
            })();
            // SAFETY: _exit(2) ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "see the child's return codes");
    }
}

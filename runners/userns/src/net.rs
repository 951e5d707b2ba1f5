//! The network namespace's loopback interface.
//!
//! A fresh network namespace has only `lo`, and it is down: builds that talk to themselves over
//! 127.0.0.1 (test servers, `localhost` lookups) need it up. No other interface is created.

use std::ffi::c_int;

use nix::errno::Errno;

/// Sets `IFF_UP` on `lo` with `SIOCGIFFLAGS`/`SIOCSIFFLAGS` (allocation-free: runs in the child).
pub(crate) fn loopback_up() -> Result<(), Errno> {
    // SAFETY: socket(2) with constant arguments; returns a new descriptor or -1.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Errno::last());
    }
    let result = set_up(sock);
    // SAFETY: we own `sock` and never use it again.
    unsafe { libc::close(sock) };
    result
}

fn set_up(sock: c_int) -> Result<(), Errno> {
    // SAFETY: `ifreq` is plain data; zeroed is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills `request.ifr_ifru.ifru_flags`, which `request` has room for.
    if unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut request as *mut libc::ifreq) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: SIOCGIFFLAGS just initialised the flags member of the union.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the name and flags from `request`.
    if unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &request as *const libc::ifreq) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

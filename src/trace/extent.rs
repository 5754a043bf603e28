//! Where a counted call lands in its file: the descriptor it is made on,
//! and for a write, truncation or range call its offset and length, read
//! at the call's entry (the position of a plain `write` from
//! `/proc/<tid>/fdinfo`, the end of the file for an `O_APPEND` one). The
//! census shows them; the power-loss recorder reads offsets the same way.

use super::resolve::read_tracee;

/// The descriptor, offset and length of one call, where it has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Extent {
    /// The descriptor the call is made on.
    pub(super) fd: Option<i32>,
    /// The file offset it starts at.
    pub(super) offset: Option<u64>,
    /// How many bytes it covers (for a truncation: the new length).
    pub(super) len: Option<u64>,
}

/// `pos` and `flags` of descriptor `fd` of `tid`.
pub(super) fn fdinfo(tid: i32, fd: u64) -> Option<(u64, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/fdinfo/{}", fd as i32)).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let pos = field("pos:")?.parse().ok()?;
    let flags = i32::from_str_radix(&field("flags:")?, 8).ok()?;
    Some((pos, flags))
}

/// Where a write through `fd` lands: `O_APPEND` writes at the end.
pub(super) fn write_offset(tid: i32, fd: u64) -> Option<(u64, i32)> {
    let (pos, flags) = fdinfo(tid, fd)?;
    if flags & libc::O_APPEND != 0 {
        let len = std::fs::metadata(format!("/proc/{tid}/fd/{}", fd as i32))
            .ok()?
            .len();
        return Some((len, flags));
    }
    Some((pos, flags))
}

/// The 8 bytes at `addr` in the tracee.
pub(super) fn read_u64(tid: i32, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    (read_tracee(tid, addr, &mut b)? == 8).then(|| u64::from_ne_bytes(b))
}

/// The total length of an iovec array of `count` entries at `addr`.
fn iov_len(tid: i32, addr: u64, count: u64) -> Option<u64> {
    let mut total: u64 = 0;
    for i in 0..count.min(1024) {
        total = total.checked_add(read_u64(tid, addr + i * 16 + 8)?)?;
    }
    Some(total)
}

/// The extent of call `name(a)` made by `tid`, stopped at its entry.
pub(super) fn of(tid: i32, name: &str, a: &[u64; 6]) -> Extent {
    let fd = |i: usize| Some(a[i] as i32);
    let pos = |i: usize| write_offset(tid, a[i]).map(|(p, _)| p);
    // An explicit offset, -1 meaning the current position (pwritev2).
    let at = |v: u64, i: usize| if v as i64 == -1 { pos(i) } else { Some(v) };
    let ptr_or_pos = |ptr: u64, i: usize| if ptr == 0 { pos(i) } else { read_u64(tid, ptr) };
    let (fd, offset, len) = match name {
        "write" => (fd(0), pos(0), Some(a[2])),
        "pwrite64" => (fd(0), Some(a[3]), Some(a[2])),
        "writev" => (fd(0), pos(0), iov_len(tid, a[1], a[2])),
        "pwritev" | "pwritev2" => (fd(0), at(a[3], 0), iov_len(tid, a[1], a[2])),
        "ftruncate" => (fd(0), None, Some(a[1])),
        "truncate" => (None, None, Some(a[1])),
        "fallocate" => (fd(0), Some(a[2]), Some(a[3])),
        "sync_file_range" => (fd(0), Some(a[1]), Some(a[2])),
        "fsync" | "fdatasync" => (fd(0), None, None),
        "copy_file_range" => (fd(2), ptr_or_pos(a[3], 2), Some(a[4])),
        "sendfile" => (fd(0), pos(0), Some(a[3])),
        _ => (None, None, None),
    };
    Extent { fd, offset, len }
}

//! The seccomp filter and the system-call table behind it: which calls are
//! trapped (the open family only with mutating flags), and how each names
//! what it mutates.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use super::TraceError;

/// How a trapped call names what it mutates (argument indexes).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) enum Kind {
    /// `open`/`openat`/`creat`: path relative to `dir` (the cwd if `None`);
    /// `flags` is filtered in BPF (`None`: always mutating).
    Open {
        dir: Option<usize>,
        path: usize,
        flags: Option<usize>,
    },
    /// `openat2`: flags are in the `struct open_how` at argument `how`.
    OpenHow { dir: usize, path: usize, how: usize },
    /// The call mutates the file behind this descriptor.
    Fd(usize),
    /// One path; `follow` tells whether a final symlink is followed.
    Path {
        dir: Option<usize>,
        path: usize,
        follow: bool,
    },
    /// `sync`, `syncfs`: no path; recorded for the power-loss model, never
    /// counted.
    Global,
    /// rename and link: both paths count; a final symlink is not followed,
    /// except for `linkat` with `AT_SYMLINK_FOLLOW` in argument `flags`.
    Two {
        old_dir: Option<usize>,
        old: usize,
        new_dir: Option<usize>,
        new: usize,
        flags: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct SysDesc {
    pub(super) nr: i64,
    pub(super) name: &'static str,
    pub(super) kind: Kind,
}

#[cfg(target_arch = "x86_64")]
pub(super) mod arch {
    use super::{Kind, SysDesc};
    use nix::unistd::Pid;

    pub(in crate::trace) const TARGET: Option<seccompiler::TargetArch> =
        Some(seccompiler::TargetArch::x86_64);

    const fn d(nr: libc::c_long, name: &'static str, kind: Kind) -> SysDesc {
        SysDesc { nr, name, kind }
    }
    const fn open(dir: Option<usize>, path: usize, flags: Option<usize>) -> Kind {
        Kind::Open { dir, path, flags }
    }
    const fn path(dir: Option<usize>, path: usize, follow: bool) -> Kind {
        Kind::Path { dir, path, follow }
    }
    const fn two(
        old_dir: Option<usize>,
        old: usize,
        new_dir: Option<usize>,
        new: usize,
        flags: Option<usize>,
    ) -> Kind {
        Kind::Two {
            old_dir,
            old,
            new_dir,
            new,
            flags,
        }
    }

    /// The trapped system calls of x86_64 (argument indexes from 0).
    #[rustfmt::skip]
    pub(in crate::trace) const SYSCALLS: &[SysDesc] = &[
        d(libc::SYS_open, "open", open(None, 0, Some(1))),
        d(libc::SYS_creat, "creat", open(None, 0, None)),
        d(libc::SYS_openat, "openat", open(Some(0), 1, Some(2))),
        d(libc::SYS_openat2, "openat2", Kind::OpenHow { dir: 0, path: 1, how: 2 }),
        d(libc::SYS_write, "write", Kind::Fd(0)),
        d(libc::SYS_pwrite64, "pwrite64", Kind::Fd(0)),
        d(libc::SYS_writev, "writev", Kind::Fd(0)),
        d(libc::SYS_pwritev, "pwritev", Kind::Fd(0)),
        d(libc::SYS_pwritev2, "pwritev2", Kind::Fd(0)),
        d(libc::SYS_rename, "rename", two(None, 0, None, 1, None)),
        d(libc::SYS_renameat, "renameat", two(Some(0), 1, Some(2), 3, None)),
        d(libc::SYS_renameat2, "renameat2", two(Some(0), 1, Some(2), 3, None)),
        d(libc::SYS_link, "link", two(None, 0, None, 1, None)),
        d(libc::SYS_linkat, "linkat", two(Some(0), 1, Some(2), 3, Some(4))),
        // symlink(target, linkpath): the link path decides, not the target.
        d(libc::SYS_symlink, "symlink", path(None, 1, false)),
        d(libc::SYS_symlinkat, "symlinkat", path(Some(1), 2, false)),
        d(libc::SYS_unlink, "unlink", path(None, 0, false)),
        d(libc::SYS_unlinkat, "unlinkat", path(Some(0), 1, false)),
        d(libc::SYS_rmdir, "rmdir", path(None, 0, false)),
        d(libc::SYS_mkdir, "mkdir", path(None, 0, false)),
        d(libc::SYS_mkdirat, "mkdirat", path(Some(0), 1, false)),
        d(libc::SYS_truncate, "truncate", path(None, 0, true)),
        d(libc::SYS_ftruncate, "ftruncate", Kind::Fd(0)),
        d(libc::SYS_fallocate, "fallocate", Kind::Fd(0)),
        d(libc::SYS_fsync, "fsync", Kind::Fd(0)),
        d(libc::SYS_fdatasync, "fdatasync", Kind::Fd(0)),
        d(libc::SYS_sync_file_range, "sync_file_range", Kind::Fd(0)),
        d(libc::SYS_sync, "sync", Kind::Global),
        d(libc::SYS_syncfs, "syncfs", Kind::Global),
        // copy_file_range(fd_in, off_in, fd_out, ...) and sendfile(out_fd,
        // in_fd, ...): the destination decides.
        d(libc::SYS_copy_file_range, "copy_file_range", Kind::Fd(2)),
        d(libc::SYS_sendfile, "sendfile", Kind::Fd(0)),
    ];

    /// The system-call number and the six arguments of a tracee stopped at
    /// a seccomp stop.
    pub(in crate::trace) fn syscall_args(tid: Pid) -> nix::Result<(i64, [u64; 6])> {
        let r = nix::sys::ptrace::getregs(tid)?;
        Ok((r.orig_rax as i64, [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]))
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) mod arch {
    //! No table yet: [`crate::trace::tracing_available`] is false and
    //! [`crate::trace::run_traced`] answers `Unsupported`. (An aarch64 table would
    //! list the `*at` calls only and read registers with `getregset`.)
    use super::SysDesc;
    use nix::unistd::Pid;

    pub(in crate::trace) const TARGET: Option<seccompiler::TargetArch> = None;
    pub(in crate::trace) const SYSCALLS: &[SysDesc] = &[];
    pub(in crate::trace) fn syscall_args(_tid: Pid) -> nix::Result<(i64, [u64; 6])> {
        Err(nix::errno::Errno::ENOSYS)
    }
}

pub(super) fn lookup(nr: i64) -> Option<&'static SysDesc> {
    arch::SYSCALLS.iter().find(|d| d.nr == nr)
}

/// `O_WRONLY`, `O_RDWR`, `O_CREAT` or `O_TRUNC`.
pub(super) fn open_mutates(flags: u64) -> bool {
    let flags = flags as libc::c_int;
    let acc = flags & libc::O_ACCMODE;
    acc == libc::O_WRONLY || acc == libc::O_RDWR || flags & (libc::O_CREAT | libc::O_TRUNC) != 0
}

/// Compiles the filter: `SECCOMP_RET_TRACE` for the table's calls (open and
/// openat only with mutating flags), `SECCOMP_RET_ALLOW` for everything else.
pub(super) fn build_filter() -> Result<BpfProgram, TraceError> {
    let target = arch::TARGET.ok_or(TraceError::Unsupported)?;
    let ferr = |e: seccompiler::BackendError| TraceError::Filter(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for desc in arch::SYSCALLS {
        let chain = match desc.kind {
            Kind::Open {
                flags: Some(arg), ..
            } => {
                let arg = u8::try_from(arg).map_err(|e| TraceError::Filter(e.to_string()))?;
                let masked = |mask: libc::c_int, value: libc::c_int| {
                    SeccompCondition::new(
                        arg,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::MaskedEq(mask as u64),
                        value as u64,
                    )
                    .and_then(|c| SeccompRule::new(vec![c]))
                };
                // Rules of a chain are alternatives: any one matching traps.
                vec![
                    masked(libc::O_ACCMODE, libc::O_WRONLY).map_err(ferr)?,
                    masked(libc::O_ACCMODE, libc::O_RDWR).map_err(ferr)?,
                    masked(libc::O_CREAT, libc::O_CREAT).map_err(ferr)?,
                    masked(libc::O_TRUNC, libc::O_TRUNC).map_err(ferr)?,
                ]
            }
            _ => Vec::new(),
        };
        rules.insert(desc.nr, chain);
    }
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Trace(0), target)
        .map_err(ferr)?;
    BpfProgram::try_from(filter).map_err(ferr)
}

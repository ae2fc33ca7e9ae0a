//! Choosing the IO driver. io_uring is preferred; where it is blocked (Docker's default seccomp profile,
//! `kernel.io_uring_disabled`, old kernels) the loop falls back to epoll. A no-op is submitted and
//! completed first, because creating a ring can succeed where submitting to it does not.

use std::io;

use compio::driver::{DriverType, ProactorBuilder};
use compio::runtime::{Runtime, RuntimeBuilder};

/// What the operator asked for (`--io-driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    Auto,
    IoUring,
    Epoll,
}

/// The driver actually in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    IoUring,
    Epoll,
}

impl DriverKind {
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Epoll => "epoll",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("io_uring was requested but does not work here: {0}")]
    IoUringUnavailable(io::Error),
    #[error("could not start the {driver} event loop: {source}")]
    Runtime {
        driver: &'static str,
        source: io::Error,
    },
}

/// Proves io_uring works by creating a ring and completing one no-op on it.
pub fn probe_io_uring() -> io::Result<()> {
    let mut ring = io_uring::IoUring::new(2)?;
    let nop = io_uring::opcode::Nop::new().build().user_data(0x6e6f70);
    // SAFETY: a no-op entry references no buffer, so nothing must outlive the submission.
    unsafe { ring.submission().push(&nop) }
        .map_err(|_| io::Error::other("submission queue full"))?;
    ring.submit_and_wait(1)?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| io::Error::other("no completion for the no-op"))?;
    if cqe.result() < 0 {
        return Err(io::Error::from_raw_os_error(-cqe.result()));
    }
    Ok(())
}

/// The chosen driver, and why io_uring was passed over when `auto` fell back.
pub struct Choice {
    pub kind: DriverKind,
    pub fallback_reason: Option<String>,
}

pub fn choose(choice: DriverChoice) -> Result<Choice, DriverError> {
    match choice {
        DriverChoice::Epoll => Ok(Choice {
            kind: DriverKind::Epoll,
            fallback_reason: None,
        }),
        DriverChoice::IoUring => probe_io_uring()
            .map(|()| Choice {
                kind: DriverKind::IoUring,
                fallback_reason: None,
            })
            .map_err(DriverError::IoUringUnavailable),
        DriverChoice::Auto => Ok(match probe_io_uring() {
            Ok(()) => Choice {
                kind: DriverKind::IoUring,
                fallback_reason: None,
            },
            Err(e) => Choice {
                kind: DriverKind::Epoll,
                fallback_reason: Some(e.to_string()),
            },
        }),
    }
}

/// Builds the single-threaded runtime on the chosen driver.
pub fn build_runtime(kind: DriverKind) -> Result<Runtime, DriverError> {
    let mut proactor = ProactorBuilder::new();
    proactor.driver_type(match kind {
        DriverKind::IoUring => DriverType::IoUring,
        DriverKind::Epoll => DriverType::Poll,
    });
    let runtime = RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()
        .map_err(|source| DriverError::Runtime {
            driver: kind.name(),
            source,
        })?;
    let actual = if runtime.driver_type().is_iouring() {
        DriverKind::IoUring
    } else {
        DriverKind::Epoll
    };
    if actual != kind {
        return Err(DriverError::Runtime {
            driver: kind.name(),
            source: io::Error::other(format!("got {} instead", actual.name())),
        });
    }
    Ok(runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_always_builds() {
        let choice = choose(DriverChoice::Epoll).unwrap();
        assert_eq!(choice.kind, DriverKind::Epoll);
        build_runtime(DriverKind::Epoll).unwrap();
    }

    #[test]
    fn auto_agrees_with_the_probe() {
        let choice = choose(DriverChoice::Auto).unwrap();
        match probe_io_uring() {
            Ok(()) => assert_eq!(choice.kind, DriverKind::IoUring),
            Err(_) => assert!(choice.fallback_reason.is_some()),
        }
        build_runtime(choice.kind).unwrap();
    }
}

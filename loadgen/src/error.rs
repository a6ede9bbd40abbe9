//! The load generator's one error type: what stopped a run before it could
//! produce a report.

use std::fmt;
use std::io;

/// Why a run could not start or finish.
#[derive(Debug)]
pub enum Error {
    /// The command line asks for something impossible.
    Usage(String),
    /// A system call failed; the text says what was being done.
    Io(String, io::Error),
    /// The in-process broker could not be started.
    Broker(io::Error),
}

impl Error {
    /// Wraps an I/O error with what was being attempted.
    pub fn io(what: impl Into<String>, err: io::Error) -> Error {
        Error::Io(what.into(), err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) => f.write_str(msg),
            Error::Io(what, err) => write!(f, "{what}: {err}"),
            Error::Broker(err) => write!(f, "cannot start the in-process broker: {err}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Usage(_) => None,
            Error::Io(_, err) | Error::Broker(err) => Some(err),
        }
    }
}

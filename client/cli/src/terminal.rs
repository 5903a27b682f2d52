//! Which standard streams a person sees: prompts, reports and how values are shown depend
//! on it.

use std::io::IsTerminal;

/// Which standard streams are terminals: it decides prompts, confirmations, the one-line
/// reports on stderr and how values are shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Terminal {
    /// Standard input is a terminal (a person types).
    pub stdin: bool,
    /// Standard output is a terminal (values are shown readably, with a final newline).
    pub stdout: bool,
    /// Standard error is a terminal (one-line reports are shown there).
    pub stderr: bool,
}

impl Terminal {
    /// No terminal at all: scripts and pipelines.
    pub const NONE: Self = Self {
        stdin: false,
        stdout: false,
        stderr: false,
    };

    /// Everything on a terminal: a person at a shell prompt.
    pub const ALL: Self = Self {
        stdin: true,
        stdout: true,
        stderr: true,
    };

    /// The process's own streams.
    pub fn detect() -> Self {
        Self {
            stdin: std::io::stdin().is_terminal(),
            stdout: std::io::stdout().is_terminal(),
            stderr: std::io::stderr().is_terminal(),
        }
    }
}

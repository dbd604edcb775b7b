//! Running host commands (`ip`, `sysctl`, `ethtool`, ...) and the crate's error type.

use std::{
    ffi::OsStr,
    process::{Command, Output, Stdio},
};

/// Errors from setting up or using the test bed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command could not be started at all.
    #[error("running `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A name does not fit the kernel's limits.
    #[error("name `{0}` is invalid (namespace names at most 64 bytes, interface names 15)")]
    BadName(String),
    /// Reading or writing a daemon's files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Something did not happen in time.
    #[error(transparent)]
    Timeout(#[from] crate::wait::Timeout),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Runs `program args` to completion; a non-zero exit is an error.
pub fn run<I, S>(program: &str, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_command(&mut cmd)
}

/// Runs `cmd` to completion with stdin closed; a non-zero exit is an error.
pub fn run_command(cmd: &mut Command) -> Result<Output> {
    let command = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Failed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// The command line of `cmd`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// What a finished command printed on stdout, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_carry_the_command_and_its_stderr() {
        let e = run("sh", ["-c", "echo oops >&2; exit 3"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sh -c") && e.contains("oops"), "{e}");
        assert!(matches!(
            run("/nonexistent/program", ["x"]),
            Err(Error::Spawn { .. })
        ));
        assert_eq!(stdout(&run("echo", ["hi"]).unwrap()), "hi\n");
    }
}

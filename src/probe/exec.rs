//! The `exec` check: an external command decides (gdnsd's `extmon`, Nagios-style plugins).
//! Its keys, validation, identity and the run itself.
//!
//! ```text
//!  argv (no shell) + env GSLBD_ADDRESS, GSLBD_PORT, GSLBD_DATACENTER (+ the check's `env`)
//!     --spawn in its own process group (stdin /dev/null, stdout/stderr piped)-->
//!  exit 0 = pass; first stdout line `load=0.42` = the load figure
//!  timeout: SIGKILL to the whole group, then reaped (no zombie, no stray grandchild)
//!  at most `max_exec` commands run at once (a semaphore shared by the prober)
//! ```
//!
//! The command's targets are never shared between datacenters (`CheckKind::per_datacenter`):
//! it is told which datacenter it checks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::time::Instant;

use super::outcome::{LoadFigure, ProbeOutcome};
use super::spec::CheckError;
use crate::walk::{Errors, Table};

/// The keys of an `exec` check besides the common ones.
pub(crate) const KEYS: &[&str] = &["command", "port", "env"];

/// Default bound on `exec` commands running at once (all checks together).
pub const DEFAULT_MAX_EXEC: usize = 16;

/// Output kept from each stream (the first line is what counts).
const MAX_OUTPUT: usize = 4096;

/// An `exec` check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExecCheck {
    /// The program and its arguments, run without a shell.
    pub command: Vec<String>,
    /// Passed as `GSLBD_PORT`; `None` = empty.
    pub port: Option<u16>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
}

impl ExecCheck {
    /// Runs `command` with no port and no extra environment.
    pub fn new(command: Vec<String>) -> ExecCheck {
        ExecCheck {
            command,
            port: None,
            env: BTreeMap::new(),
        }
    }

    /// Reads the keys of an `exec` check (`command` is required); `None` after reporting an
    /// error.
    pub(crate) fn read(t: &mut Table<'_>, errs: &mut Errors) -> Option<ExecCheck> {
        let before = errs.list.len();
        let command: Vec<String> = match t.get("command") {
            Some(crate::walk::DeValue::Array(_)) => t
                .str_list("command", errs)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, s)| s.to_string())
                .collect(),
            Some(_) => {
                errs.add(
                    &t.key_path("command"),
                    "expected a list (argv, run without a shell): [\"/path/to/script\", \"arg\"]",
                );
                vec![]
            }
            None => {
                errs.add(
                    &t.key_path("command"),
                    "is required for an exec check (a list: [\"/path/to/script\", \"arg\"])",
                );
                vec![]
            }
        };
        let port = t.int("port", 1, 65535, errs).map(|p| p as u16);
        let mut env = BTreeMap::new();
        if let Some(mut e) = t.table("env", errs) {
            for (k, v) in e.entries() {
                let p = e.key_path(k);
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    errs.add(&p, "is not a valid environment variable name");
                    continue;
                }
                match v {
                    crate::walk::DeValue::String(s) if !s.contains('\0') => {
                        env.insert(k.to_string(), s.to_string());
                    }
                    _ => errs.add(&p, "expected a string"),
                }
            }
        }
        if errs.list.len() > before {
            return None;
        }
        let c = ExecCheck { command, port, env };
        if let Err(e) = c.validate() {
            errs.add(&t.key_path("command"), e.to_string());
            return None;
        }
        Some(c)
    }

    /// Rejects a command that names no program.
    pub(crate) fn validate(&self) -> Result<(), CheckError> {
        match self.command.first() {
            Some(p) if !p.trim().is_empty() && !p.contains('\0') => Ok(()),
            _ => Err(CheckError::EmptyCommand),
        }
    }

    /// What is probed, for the warm-start key.
    pub(crate) fn fingerprint(&self) -> String {
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "exec:{}:{}:{}",
            self.port.map_or(String::new(), |p| p.to_string()),
            self.command.join("\u{1f}"),
            env.join("\u{1f}")
        )
    }
}

/// Kills the process group when dropped (a probe cancelled at shutdown, or a timeout).
struct GroupGuard(Option<i32>);

impl GroupGuard {
    // The crate's second `unsafe` (after the UDP batch calls in `dns::udp`): kill(2) has no
    // safe wrapper in std, and a group cannot be signalled through `Child`.
    #[allow(unsafe_code)]
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) with a negative pid signals the process group we created for
            // the child (it is the leader, its pid is the group id); no memory is involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `r` to its end, keeping the first [`MAX_OUTPUT`] bytes.
async fn collect(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(out.len());
        out.extend_from_slice(&buf[..n.min(room)]);
    }
    out
}

fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

/// The load figure of a `load=0.42` first line: `None` when the line is something else.
pub(crate) fn parse_load(stdout: &[u8]) -> Option<Result<f64, String>> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().next()?.trim();
    let v = line.strip_prefix("load=")?.trim();
    Some(match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x.min(1.0)),
        _ => Err(format!("`{line}`: the load must be a number from 0 to 1")),
    })
}

/// Runs `e` once for `addr` of `datacenter`: the verdict, the run time and the load figure.
pub(super) async fn probe(
    e: &ExecCheck,
    addr: SocketAddr,
    datacenter: &str,
    timeout: Duration,
) -> (ProbeOutcome, Option<Duration>, Option<LoadFigure>) {
    let Some((program, args)) = e.command.split_first() else {
        return (ProbeOutcome::Other("empty command".into()), None, None);
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(&e.env)
        .env("GSLBD_ADDRESS", addr.ip().to_string())
        .env(
            "GSLBD_PORT",
            e.port.map_or(String::new(), |p| p.to_string()),
        )
        .env("GSLBD_DATACENTER", datacenter)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills whatever it started too.
        .process_group(0)
        // Dropped before it was reaped (shutdown): tokio reaps it in the background.
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(err) => {
            return (
                ProbeOutcome::Other(format!("cannot run {program}: {err}")),
                None,
                None,
            );
        }
    };
    let mut group = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
    let stdout = child.stdout.take().map(|s| tokio::spawn(collect(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(collect(s)));
    let status = tokio::time::timeout(timeout, child.wait()).await;
    let took = start.elapsed();
    // Whatever it left running in its group goes with it (a hung grandchild would keep the
    // pipes open and the slot taken). After a normal exit the leader is already reaped: its
    // pid is not reused while the group has members; only if the group is empty and, within
    // these microseconds, a new process took that pid and made it a group of its own could
    // the signal reach anything else (the kernel hands pids out in increasing order).
    group.kill();
    let status = match status {
        Ok(Ok(s)) => s,
        Ok(Err(err)) => {
            return (
                ProbeOutcome::Other(format!("waiting for {program}: {err}")),
                None,
                None,
            );
        }
        Err(_) => {
            // Killed above; reap it now so no zombie is left.
            let _ = child.wait().await;
            return (ProbeOutcome::Timeout(timeout), None, None);
        }
    };
    let read = |h: Option<tokio::task::JoinHandle<Vec<u8>>>| async move {
        match h {
            // The group is gone, so the pipes close at once; bounded anyway.
            Some(h) => tokio::time::timeout(Duration::from_millis(500), h)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => Vec::new(),
        }
    };
    let out = read(stdout).await;
    let err = read(stderr).await;
    if !status.success() {
        let why = match status.code() {
            Some(c) => format!("exit status {c}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                format!("killed by signal {}", status.signal().unwrap_or(0))
            }
        };
        let line = first_line(if err.iter().any(|b| !b.is_ascii_whitespace()) {
            &err
        } else {
            &out
        });
        let msg = if line.is_empty() {
            why
        } else {
            format!("{why}: {line}")
        };
        return (ProbeOutcome::Exit(msg), Some(took), None);
    }
    match parse_load(&out) {
        None => (ProbeOutcome::Pass, Some(took), None),
        Some(Ok(v)) => (
            ProbeOutcome::Pass,
            Some(took),
            Some(LoadFigure::Utilisation(v)),
        ),
        Some(Err(reason)) => (ProbeOutcome::BadLoad(reason), Some(took), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_lines() {
        assert_eq!(parse_load(b"load=0.42\nok\n"), Some(Ok(0.42)));
        assert_eq!(parse_load(b"load=7"), Some(Ok(1.0)));
        assert_eq!(parse_load(b"all good\nload=0.4"), None);
        assert_eq!(parse_load(b""), None);
        assert!(matches!(parse_load(b"load=high"), Some(Err(_))));
        assert!(matches!(parse_load(b"load=-1"), Some(Err(_))));
    }
}

//! The server under test: spawning it (pinned), waiting until it listens, stopping it, and
//! reading its memory, file descriptors and CPU time from `/proc`.
//!
//! Readings are plain snapshots; the scenario decides when to take them (before the ramp, after
//! it, after churn, after closing everything). Kernel socket memory comes from
//! `/proc/net/sockstat`, which counts every TCP socket of the network namespace — on one host
//! that includes the client ends, which the summary says next to the number.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, BenchResult};

/// The readiness line the server prints on stderr.
const READY_MARKER: &str = "listening on";
/// How long a stopped server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcSample {
    /// Resident set size (VmRSS).
    pub rss_bytes: u64,
    /// Open file descriptors (entries of /proc/<pid>/fd).
    pub fds: u64,
    /// User plus system CPU time of all its threads.
    pub cpu_seconds: f64,
    /// Threads.
    pub threads: u64,
}

/// Kernel TCP socket accounting of the namespace (`/proc/net/sockstat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockStat {
    /// TCP sockets in use (both ends of loopback connections count).
    pub tcp_inuse: u64,
    /// TCP sockets allocated (including TIME_WAIT and orphans).
    pub tcp_alloc: u64,
    /// TIME_WAIT sockets.
    pub tcp_time_wait: u64,
    /// Memory charged to TCP socket buffers: `mem` pages times the page size.
    pub tcp_mem_bytes: u64,
}

/// Clock ticks per second for /proc CPU times.
fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Page size in bytes.
pub fn page_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if bytes > 0 { bytes as u64 } else { 4096 }
}

/// Parses utime+stime (seconds) and the thread count from a `stat` file's text.
pub fn parse_stat_cpu(text: &str) -> Option<(f64, u64)> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    // After ')': state(0) ... utime(11) stime(12) ... num_threads(17).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let threads: u64 = fields.get(17)?.parse().ok()?;
    Some(((utime + stime) as f64 / clock_ticks_per_s(), threads))
}

/// Reads RSS, fd count, CPU time and threads of `pid`.
pub fn sample_process(pid: i32) -> io::Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (cpu_seconds, threads) =
        parse_stat_cpu(&stat).ok_or_else(|| io::Error::other("unparsable /proc/<pid>/stat"))?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok(ProcSample {
        rss_bytes: rss_kib * 1024,
        fds,
        cpu_seconds,
        threads,
    })
}

/// CPU seconds used by one thread of this process.
pub fn thread_cpu_seconds(tid: i32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    parse_stat_cpu(&stat)
        .map(|(seconds, _)| seconds)
        .ok_or_else(|| io::Error::other("unparsable thread stat"))
}

/// Parses the `TCP:` line of `/proc/net/sockstat`.
pub fn parse_sockstat(text: &str, page_bytes: u64) -> Option<SockStat> {
    let line = text.lines().find(|line| line.starts_with("TCP:"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let value = |name: &str| {
        fields
            .iter()
            .position(|field| *field == name)
            .and_then(|index| fields.get(index + 1))
            .and_then(|value| value.parse::<u64>().ok())
    };
    Some(SockStat {
        tcp_inuse: value("inuse")?,
        tcp_alloc: value("alloc").unwrap_or(0),
        tcp_time_wait: value("tw").unwrap_or(0),
        tcp_mem_bytes: value("mem")? * page_bytes,
    })
}

/// Reads `/proc/net/sockstat`.
pub fn read_sockstat() -> io::Result<SockStat> {
    let text = std::fs::read_to_string("/proc/net/sockstat")?;
    parse_sockstat(&text, page_bytes())
        .ok_or_else(|| io::Error::other("unparsable /proc/net/sockstat"))
}

/// A server started by the harness; killed on drop if still running.
pub struct ServerProcess {
    /// The child.
    child: Child,
    /// Where its stdout and stderr go.
    pub log_path: PathBuf,
}

impl ServerProcess {
    /// Starts `binary args...` pinned to `cores`, logging to `log_path`, and waits for the
    /// "listening on" line on stderr.
    pub fn spawn(
        binary: &Path,
        args: &[String],
        cores: Option<&[usize]>,
        ready_timeout: Duration,
        log_path: &Path,
    ) -> BenchResult<Self> {
        let log = File::create(log_path)
            .map_err(|error| BenchError::io(format!("creating {}", log_path.display()), error))?;
        let stdout_log = log
            .try_clone()
            .map_err(|error| BenchError::io("duplicating the log fd", error))?;
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout_log)
            .stderr(Stdio::piped());
        if let Some(cores) = cores {
            // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it for CPUs below CPU_SETSIZE.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            for &cpu in cores {
                // SAFETY: see above; parse_cpu_list bounds cpu.
                unsafe { libc::CPU_SET(cpu, &mut set) };
            }
            // SAFETY: the hook only calls sched_setaffinity, which is async-signal-safe, on a set
            // built before fork; the affinity is inherited by every thread the server starts.
            unsafe {
                command.pre_exec(move || {
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .spawn()
            .map_err(|error| BenchError::io(format!("spawning {}", binary.display()), error))?;
        let stderr = child.stderr.take().expect("stderr was piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("server-log".into())
            .spawn(move || forward_log(stderr, log, ready_tx))
            .map_err(|error| BenchError::io("spawning the log thread", error))?;
        let mut server = ServerProcess {
            child,
            log_path: log_path.to_owned(),
        };
        let deadline = Instant::now() + ready_timeout;
        // Bounded by the deadline.
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(BenchError::ServerNotReady(format!(
                    "it exited with {status}; see {}",
                    log_path.display()
                )));
            }
            match ready_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => return Ok(server),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    server.kill();
                    return Err(BenchError::ServerNotReady(format!(
                        "no {READY_MARKER:?} line within {ready_timeout:?}; see {}",
                        log_path.display()
                    )));
                }
            }
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGTERM, waits up to `STOP_TIMEOUT`, then SIGKILL; returns how it ended.
    pub fn stop(mut self) -> String {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.to_string();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        "killed after SIGTERM timeout".to_owned()
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Copies the server's stderr into the log and signals the readiness line once.
fn forward_log(stderr: impl io::Read, mut log: File, ready: mpsc::Sender<()>) {
    use std::io::Write;
    let mut signalled = false;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(log, "{line}");
        if !signalled && line.contains(READY_MARKER) {
            signalled = true;
            let _ = ready.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name_parses() {
        let text = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 12345 1000 10 18446744073709551615";
        let (cpu_seconds, threads) = parse_stat_cpu(text).unwrap();
        assert!((cpu_seconds - 300.0 / clock_ticks_per_s()).abs() < 1e-9);
        assert_eq!(threads, 7);
    }

    #[test]
    fn sockstat_parses() {
        let text =
            "sockets: used 300\nTCP: inuse 12 orphan 0 tw 3 alloc 15 mem 7\nUDP: inuse 1 mem 0\n";
        let stat = parse_sockstat(text, 4096).unwrap();
        assert_eq!(
            stat,
            SockStat {
                tcp_inuse: 12,
                tcp_alloc: 15,
                tcp_time_wait: 3,
                tcp_mem_bytes: 7 * 4096
            }
        );
    }

    #[test]
    fn own_process_can_be_sampled() {
        let sample = sample_process(std::process::id() as i32).unwrap();
        assert!(sample.rss_bytes > 0 && sample.fds > 0 && sample.threads >= 1);
        assert!(read_sockstat().is_ok());
    }

    #[test]
    fn spawned_server_is_awaited_pinned_sampled_and_stopped() {
        let log =
            std::env::temp_dir().join(format!("ringcast-bench-spawn-{}.log", std::process::id()));
        let args = [
            "-c".to_owned(),
            "echo 'listening on 127.0.0.1:1' >&2; exec sleep 30".to_owned(),
        ];
        let server = ServerProcess::spawn(
            Path::new("/bin/sh"),
            &args,
            Some(&[0]),
            Duration::from_secs(5),
            &log,
        )
        .unwrap();
        assert!(sample_process(server.pid()).is_ok());
        assert!(server.stop().contains("SIGTERM"));
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .contains("listening on")
        );
    }

    #[test]
    fn server_that_never_gets_ready_is_an_error() {
        let log =
            std::env::temp_dir().join(format!("ringcast-bench-noready-{}.log", std::process::id()));
        let args = ["-c".to_owned(), "exit 3".to_owned()];
        let result = ServerProcess::spawn(
            Path::new("/bin/sh"),
            &args,
            None,
            Duration::from_secs(5),
            &log,
        );
        assert!(matches!(result, Err(BenchError::ServerNotReady(_))));
    }
}

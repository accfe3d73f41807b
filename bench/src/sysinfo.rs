//! The environment a result was measured in (`env.txt`), and the harness's own fd limit.
//!
//! Numbers without their machine are meaningless: every run records the kernel, CPU, cores,
//! memory, the limits and sysctls that cap connection counts, the git commits of the server and
//! of the harness, and the exact command line.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Sysctls that shape C10k..C1M results.
const SYSCTLS: [&str; 12] = [
    "fs/file-max",
    "fs/nr_open",
    "net/core/somaxconn",
    "net/core/netdev_max_backlog",
    "net/ipv4/tcp_max_syn_backlog",
    "net/ipv4/ip_local_port_range",
    "net/ipv4/tcp_mem",
    "net/ipv4/tcp_rmem",
    "net/ipv4/tcp_wmem",
    "net/ipv4/tcp_tw_reuse",
    "net/netfilter/nf_conntrack_max",
    "net/ipv4/tcp_congestion_control",
];

/// Raises this process's RLIMIT_NOFILE soft limit to the hard limit; returns (soft, hard).
pub fn raise_nofile_limit() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return (0, 0);
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: valid pointer; raising the soft limit up to the hard limit needs no privilege.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    // SAFETY: as above.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (limit.rlim_cur, limit.rlim_max)
}

/// Reads a one-line /proc file, trimmed; "n/a" if absent.
fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

/// Runs git in `dir` and returns its trimmed output.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// "commit (dirty)" for the checkout containing `dir`, if it is one. Changes under `results/`
/// do not count: a run rewrites the published results it is part of.
pub fn git_describe(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "HEAD"])?;
    let dirty = git(
        dir,
        &[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ":(top)",
            ":(top,exclude)results",
        ],
    )
    .is_some_and(|status| !status.is_empty());
    Some(if dirty {
        format!("{commit} (dirty)")
    } else {
        commit
    })
}

/// Quotes an argument for a POSIX shell when needed.
pub fn shell_quote(argument: &str) -> String {
    let plain = !argument.is_empty()
        && argument
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        argument.to_owned()
    } else {
        format!("'{}'", argument.replace('\'', "'\\''"))
    }
}

/// Builds `env.txt`.
pub fn environment_text(
    server_git_dir: Option<&Path>,
    server_binary: Option<&Path>,
    nofile: (u64, u64),
) -> String {
    let mut out = String::new();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                line.strip_prefix("model name")
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "n/a".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .map(|line| line.trim_start_matches("MemTotal:").trim().to_owned())
        })
        .unwrap_or_else(|| "n/a".into());
    let cores = std::thread::available_parallelism()
        .map(|cores| cores.get())
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "kernel: {}",
        read_trimmed("/proc/sys/kernel/osrelease")
    );
    let _ = writeln!(out, "cpu_model: {cpu_model}");
    let _ = writeln!(out, "cpus_available: {cores}");
    let _ = writeln!(out, "memory_total: {memory}");
    let _ = writeln!(out, "nofile_limit_soft_hard: {} {}", nofile.0, nofile.1);
    for sysctl in SYSCTLS {
        let _ = writeln!(
            out,
            "sysctl {}: {}",
            sysctl.replace('/', "."),
            read_trimmed(&format!("/proc/sys/{sysctl}"))
        );
    }
    let _ = writeln!(
        out,
        "harness_git_commit: {}",
        git_describe(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|| "unknown".into())
    );
    let server_dir = server_git_dir
        .map(Path::to_path_buf)
        .or_else(|| server_binary.and_then(Path::parent).map(Path::to_path_buf));
    let server_commit = server_dir
        .as_deref()
        .and_then(git_describe)
        .unwrap_or_else(|| "unknown".into());
    let _ = writeln!(
        out,
        "server_binary: {}",
        server_binary
            .map(|path| path.display().to_string())
            .unwrap_or_else(|| "not spawned".into())
    );
    let _ = writeln!(out, "server_git_commit: {server_commit}");
    let command_line: Vec<String> = std::env::args()
        .map(|argument| shell_quote(&argument))
        .collect();
    let _ = writeln!(out, "command_line: {}", command_line.join(" "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_is_shell_safe() {
        assert_eq!(shell_quote("--rate"), "--rate");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn environment_lists_the_essentials() {
        let text = environment_text(None, None, (1, 2));
        for key in [
            "kernel:",
            "cpu_model:",
            "cpus_available:",
            "memory_total:",
            "sysctl net.core.somaxconn:",
            "command_line:",
        ] {
            assert!(text.contains(key), "{key} missing");
        }
    }
}

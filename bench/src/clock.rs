//! Monotonic time and CPU pinning.
//!
//! Payload timestamps are `CLOCK_MONOTONIC` nanoseconds: the publisher, the receivers and the
//! floor server run on the same host, so their clocks agree and one subtraction gives the
//! latency. `std::time::Instant` uses the same clock but hides the raw value, which is why this
//! module calls `clock_gettime` itself (through the vDSO, so it costs no system call).

use std::io;

/// Returns `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable timespec and CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut time) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) cannot fail on Linux");
    (time.tv_sec as u64) * 1_000_000_000 + time.tv_nsec as u64
}

/// Parses a CPU list such as `0`, `0,2`, `1-3` or `0-1,4-5` into CPU numbers.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    /// A CPU list longer than this is a typo, not a machine.
    const CPUS_MAX: usize = 4096;
    let mut cpus = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (first, last),
            None => (part, part),
        };
        let first: usize = first
            .parse()
            .map_err(|_| format!("bad CPU number in {part:?}"))?;
        let last: usize = last
            .parse()
            .map_err(|_| format!("bad CPU number in {part:?}"))?;
        if first > last || last >= CPUS_MAX {
            return Err(format!("bad CPU range {part:?}"));
        }
        cpus.extend(first..=last);
    }
    if cpus.is_empty() {
        return Err(format!("empty CPU list {text:?}"));
    }
    Ok(cpus)
}

/// Builds a `cpu_set_t` holding `cpus`.
fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET only writes inside `set`; parse_cpu_list bounds cpu below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    set
}

/// Pins the calling thread (or, in a `pre_exec` hook, the process about to be executed) to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    let set = cpu_set(cpus);
    // SAFETY: pid 0 means the calling thread; `set` is a valid cpu_set_t of the given size.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Returns the kernel's thread id of the calling thread (for `/proc/self/task/<tid>/stat`).
pub fn current_thread_id() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0,2").unwrap(), vec![0, 2]);
        assert_eq!(parse_cpu_list("1-3,5").unwrap(), vec![1, 2, 3, 5]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("x").is_err());
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let first = monotonic_ns();
        let second = monotonic_ns();
        assert!(second >= first);
    }
}

//! Fault injection for tests (cargo feature `test-hooks`; without it every hook is an inlined
//! no-op and the `--test-fault` flag does not exist).
//!
//! Each hook sits where a real fault would strike, so the tests exercise the real recovery
//! path: a panic inside one connection's handler, a connection whose registration fails after
//! its socket was accepted, an io_uring submission that fails after the kernel took the
//! entries, a shard whose ticker panics, a Redis forwarder that panics.
//!
//! `--test-fault SPEC` (repeatable):
//! - `panic-on-message=TEXT`: a connection that receives the text message TEXT panics in its
//!   handler.
//! - `fail-register=CHANNEL`: registering a WebSocket connection for CHANNEL fails after its
//!   registry entry was made.
//! - `uring-submit-error=N`: the Nth io_uring write submission (1-based) reports an error after
//!   submitting; the retry succeeds.
//! - `uring-ring-dead=N`: from the Nth io_uring write submission on, every submission and wait
//!   reports an error after submitting, so the ring must be retired.
//! - `panic-shard=ID`: shard ID's ticker panics once the shard has run for 300 ms.
//! - `panic-redis-forwarder=TEXT`: the Redis forwarder panics on a message whose value is TEXT.
//! - `stall-fanout=ID`: shard ID's fan-out waits 2 s before taking each batch of messages (its
//!   inbox fills up, as a stalled shard's would).
//! - `freeze-after-message=TEXT`: after a connection receives the text message TEXT, its
//!   shard's next tick blocks the shard's thread for 3 s (as CPU starvation, a SIGSTOP or a VM
//!   pause would): nothing of the shard runs, then its ticker goes on first.
//! - `lose-wakeup=TEXT`: after a connection receives the text message TEXT, the next reactor
//!   wake-up its shard arms is lost (a POLL_ADD the kernel never completes), so input that
//!   arrives afterwards is announced by nothing.
//! - `delay-presence-join=USER_ID`: a presence join by USER_ID waits 2 s before it asks the
//!   membership store and 2 s after the answer (a slow store, both ways), so other members'
//!   events reach the joining connection meanwhile.

#[cfg(feature = "test-hooks")]
mod enabled {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// The faults asked for on the command line.
    #[derive(Debug, Default)]
    struct Plan {
        panic_on_message: Option<Vec<u8>>,
        fail_register: Option<String>,
        uring_submit_error: Option<u64>,
        uring_ring_dead: Option<u64>,
        panic_shard: Option<usize>,
        panic_redis_forwarder: Option<Vec<u8>>,
        stall_fanout: Option<usize>,
        lose_wakeup: Option<Vec<u8>>,
        freeze_after_message: Option<Vec<u8>>,
        delay_presence_join: Option<String>,
        /// io_uring write submissions so far (all shards).
        uring_submissions: AtomicU64,
        /// The `lose-wakeup` message arrived: the next wake-up armed is lost.
        wakeup_to_lose: AtomicBool,
        /// The `freeze-after-message` message arrived: the next tick freezes its shard.
        freeze_pending: AtomicBool,
    }

    static PLAN: OnceLock<Plan> = OnceLock::new();

    /// Parses and installs the `--test-fault` specs (once, at start).
    pub fn install(specs: &[String]) -> Result<(), String> {
        let mut plan = Plan::default();
        for spec in specs {
            let (name, value) = spec
                .split_once('=')
                .ok_or_else(|| format!("--test-fault {spec:?}: expected NAME=VALUE"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("--test-fault {spec:?}: expected a number"))
            };
            match name {
                "panic-on-message" => plan.panic_on_message = Some(value.as_bytes().to_vec()),
                "fail-register" => plan.fail_register = Some(value.to_string()),
                "uring-submit-error" => plan.uring_submit_error = Some(number()?),
                "uring-ring-dead" => plan.uring_ring_dead = Some(number()?),
                "panic-shard" => plan.panic_shard = Some(number()? as usize),
                "panic-redis-forwarder" => {
                    plan.panic_redis_forwarder = Some(value.as_bytes().to_vec())
                }
                "stall-fanout" => plan.stall_fanout = Some(number()? as usize),
                "lose-wakeup" => plan.lose_wakeup = Some(value.as_bytes().to_vec()),
                "freeze-after-message" => {
                    plan.freeze_after_message = Some(value.as_bytes().to_vec())
                }
                "delay-presence-join" => plan.delay_presence_join = Some(value.to_string()),
                _ => return Err(format!("--test-fault {spec:?}: unknown fault")),
            }
        }
        if !specs.is_empty() {
            log::warn!("test faults armed: {specs:?}");
        }
        PLAN.set(plan)
            .map_err(|_| "--test-fault: installed twice".to_string())
    }

    fn plan() -> Option<&'static Plan> {
        PLAN.get()
    }

    pub fn on_client_message(payload: &[u8]) {
        if plan().and_then(|p| p.panic_on_message.as_deref()) == Some(payload) {
            panic!("test fault: panic-on-message");
        }
        if let Some(plan) = plan()
            && plan.lose_wakeup.as_deref() == Some(payload)
        {
            plan.wakeup_to_lose.store(true, Ordering::Relaxed);
        }
        if let Some(plan) = plan()
            && plan.freeze_after_message.as_deref() == Some(payload)
        {
            plan.freeze_pending.store(true, Ordering::Relaxed);
        }
    }

    pub fn lose_wakeup() -> bool {
        plan().is_some_and(|plan| plan.wakeup_to_lose.swap(false, Ordering::Relaxed))
    }

    pub fn fail_registration(channel: Option<&str>) -> bool {
        channel.is_some() && plan().and_then(|p| p.fail_register.as_deref()) == channel
    }

    pub fn uring_submit() -> Option<std::io::Error> {
        let plan = plan()?;
        let number = plan.uring_submissions.fetch_add(1, Ordering::Relaxed) + 1;
        let dead = plan.uring_ring_dead.is_some_and(|from| number >= from);
        (dead || plan.uring_submit_error == Some(number))
            .then(|| std::io::Error::from_raw_os_error(libc::EBUSY))
    }

    pub fn uring_wait_fails() -> bool {
        plan().is_some_and(|plan| {
            plan.uring_ring_dead
                .is_some_and(|from| plan.uring_submissions.load(Ordering::Relaxed) >= from)
        })
    }

    pub fn on_shard_tick(shard: usize, uptime_ms: u64) {
        if plan().and_then(|p| p.panic_shard) == Some(shard) && uptime_ms >= 300 {
            panic!("test fault: panic-shard {shard}");
        }
        if plan().is_some_and(|plan| plan.freeze_pending.swap(false, Ordering::Relaxed)) {
            log::warn!("test fault: freezing shard {shard} for 3 s");
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
    }

    pub fn on_redis_payload(payload: &[u8]) {
        if plan().and_then(|p| p.panic_redis_forwarder.as_deref()) == Some(payload) {
            panic!("test fault: panic-redis-forwarder");
        }
    }

    pub fn fanout_stall(shard: usize) -> Option<std::time::Duration> {
        (plan().and_then(|p| p.stall_fanout) == Some(shard))
            .then(|| std::time::Duration::from_secs(2))
    }

    pub fn presence_join_delay(user_id: &str) -> Option<std::time::Duration> {
        (plan().and_then(|p| p.delay_presence_join.as_deref()) == Some(user_id))
            .then(|| std::time::Duration::from_secs(2))
    }
}

#[cfg(feature = "test-hooks")]
pub use enabled::*;

#[cfg(not(feature = "test-hooks"))]
mod disabled {
    /// A connection received a data message.
    #[inline(always)]
    pub fn on_client_message(_payload: &[u8]) {}

    /// Should registering a connection for `channel` fail?
    #[inline(always)]
    pub fn fail_registration(_channel: Option<&str>) -> bool {
        false
    }

    /// An error to report for this io_uring submission (after submitting), if any.
    #[inline(always)]
    pub fn uring_submit() -> Option<std::io::Error> {
        None
    }

    /// Should waiting for completions fail?
    #[inline(always)]
    pub fn uring_wait_fails() -> bool {
        false
    }

    /// Should the reactor wake-up being armed be lost?
    #[inline(always)]
    pub fn lose_wakeup() -> bool {
        false
    }

    /// A shard's ticker ran.
    #[inline(always)]
    pub fn on_shard_tick(_shard: usize, _uptime_ms: u64) {}

    /// The Redis forwarder received a message.
    #[inline(always)]
    pub fn on_redis_payload(_payload: &[u8]) {}

    /// How long shard `shard`'s fan-out waits before taking a batch.
    #[inline(always)]
    pub fn fanout_stall(_shard: usize) -> Option<std::time::Duration> {
        None
    }

    /// How long a presence join by `user_id` waits before and after asking the store.
    #[inline(always)]
    pub fn presence_join_delay(_user_id: &str) -> Option<std::time::Duration> {
        None
    }
}

#[cfg(not(feature = "test-hooks"))]
pub use disabled::*;

//! Percentiles and resident memory.

use std::time::Duration;

/// The `p`-th percentile (0..=100) of `samples`, in milliseconds.
pub(crate) fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    if samples.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)].as_secs_f64() * 1000.0
}

/// Resident set size of this process, in KiB.
pub(crate) fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Returns memory the allocator holds but no longer uses to the system (glibc), so RSS
/// reflects live memory rather than garbage left by startup.
pub(crate) fn trim_allocator() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CPU time used so far: by this process, and by the whole machine (all cores, from
/// `/proc/stat`). Their difference over a span is, on a machine running only the benchmark
/// and its Postgres, the server's share.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuTime {
    pub(crate) process: Duration,
    pub(crate) machine: Duration,
}

impl CpuTime {
    pub(crate) fn now() -> CpuTime {
        CpuTime {
            process: process_cpu(),
            machine: machine_cpu(),
        }
    }

    /// The CPU used since `earlier`.
    pub(crate) fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            process: self.process.saturating_sub(earlier.process),
            machine: self.machine.saturating_sub(earlier.machine),
        }
    }

    pub(crate) fn add(self, other: CpuTime) -> CpuTime {
        CpuTime {
            process: self.process + other.process,
            machine: self.machine + other.machine,
        }
    }

    /// (this process, everything else) in microseconds per unit of work.
    pub(crate) fn per(self, n: usize) -> (f64, f64) {
        let n = n.max(1) as f64;
        let client = self.process.as_secs_f64() * 1e6 / n;
        let rest = self.machine.saturating_sub(self.process).as_secs_f64() * 1e6 / n;
        (client, rest)
    }
}

fn process_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn machine_cpu() -> Duration {
    // The first line of /proc/stat: "cpu user nice system idle iowait irq softirq steal ...",
    // in clock ticks. Busy = everything but idle and iowait.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.to_owned();
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let busy: u64 = v
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 3 && *i != 4 && *i < 7)
                .map(|(_, x)| x)
                .sum();
            Some(Duration::from_secs_f64(busy as f64 / ticks_per_s))
        })
        .unwrap_or_default()
}

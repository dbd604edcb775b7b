//! Machine-wide CPU time from `/proc/stat`, to put a CPU cost next to a
//! packet rate. `/proc/stat` is not per namespace: it counts everything the
//! machine runs, so benchmarks take it over short windows and report it as
//! what it is.

use std::fs;

/// CPU time counters (in USER_HZ ticks) summed over every CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time doing anything.
    pub busy: u64,
    /// Time in softirq (where XDP, veth NAPI and IP forwarding run).
    pub softirq: u64,
    /// Time in the kernel on behalf of processes (system calls).
    pub system: u64,
    /// Everything, idle included.
    pub total: u64,
}

/// Errors reading CPU times.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// `/proc/stat` could not be read.
    #[error("reading /proc/stat: {0}")]
    Read(#[from] std::io::Error),
    /// Its `cpu` line did not look as expected.
    #[error("unexpected /proc/stat cpu line: {0:?}")]
    Parse(String),
}

impl CpuTimes {
    /// Reads the aggregate `cpu` line of `/proc/stat`, or CPU `cpu`'s.
    pub fn now(cpu: Option<usize>) -> Result<Self, CpuError> {
        Self::parse(&fs::read_to_string("/proc/stat")?, cpu)
    }

    /// Parses the text of `/proc/stat`: all CPUs, or CPU `cpu`.
    pub fn parse(text: &str, cpu: Option<usize>) -> Result<Self, CpuError> {
        let label = match cpu {
            Some(n) => format!("cpu{n} "),
            None => "cpu ".to_owned(),
        };
        let line = text
            .lines()
            .find(|l| l.starts_with(&label))
            .ok_or_else(|| CpuError::Parse(label.clone()))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| CpuError::Parse(line.to_owned()))?;
        if f.len() < 8 {
            return Err(CpuError::Parse(line.to_owned()));
        }
        // user nice system idle iowait irq softirq steal [guest guest_nice]:
        // guest time is already inside user, so only the first eight count.
        let total: u64 = f[..8].iter().sum();
        let idle = f[3] + f[4];
        Ok(Self {
            busy: total - idle,
            softirq: f[6],
            system: f[2],
            total,
        })
    }

    /// Shares of the time between `self` (earlier) and `later`, as fractions
    /// of all CPUs' time: (busy, softirq, system).
    pub fn shares_until(&self, later: &CpuTimes) -> (f64, f64, f64) {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        (
            later.busy.saturating_sub(self.busy) as f64 / total,
            later.softirq.saturating_sub(self.softirq) as f64 / total,
            later.system.saturating_sub(self.system) as f64 / total,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cpu_line_and_computes_shares() {
        let a = CpuTimes::parse(
            "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 0 2 3 0 0 4 0\n",
            None,
        )
        .unwrap();
        let c0 = CpuTimes::parse(
            "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 0 2 3 0 0 4 0\n",
            Some(0),
        )
        .unwrap();
        assert_eq!(
            c0,
            CpuTimes {
                busy: 7,
                softirq: 4,
                system: 2,
                total: 10
            }
        );
        assert_eq!(
            a,
            CpuTimes {
                busy: 150,
                softirq: 0,
                system: 50,
                total: 1000
            }
        );
        let b = CpuTimes::parse("cpu  150 0 100 1000 50 0 100 0 0 0\n", None).unwrap();
        let (busy, soft, sys) = a.shares_until(&b);
        assert!(
            (busy - 0.5).abs() < 1e-9 && (soft - 0.25).abs() < 1e-9 && (sys - 0.125).abs() < 1e-9
        );
        assert!(CpuTimes::parse("intr 1 2 3\n", None).is_err());
        assert!(CpuTimes::parse("cpu  1 2 x\n", None).is_err());
        assert!(CpuTimes::parse("cpu  1 2 3 4 5 6 7 8\n", Some(1)).is_err());
    }
}

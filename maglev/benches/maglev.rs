//! Benchmarks of table construction, lookup, comparison and fingerprinting.
//!
//! `cargo bench -p maglev` measures (median and fastest of 15 samples, 5 for
//! cases slower than half a second); `cargo bench -p maglev -- NAME` runs the
//! cases whose name contains NAME.
//! `cargo test` runs each case once (but the multi-second one), as a smoke test, so the benchmarks keep
//! building and working. No external harness: the crate has no dependencies.

use std::hint::black_box;
use std::time::{Duration, Instant};

use maglev::{Table, TableSize};

/// SplitMix64, for reproducible inputs.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn addrs(n: usize) -> Vec<std::net::SocketAddr> {
    (0..n)
        .map(|i| std::net::SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8080)))
        .collect()
}

fn equal(n: usize) -> Vec<(std::net::SocketAddr, u32)> {
    addrs(n).into_iter().map(|a| (a, 1)).collect()
}

fn random_weights(n: usize, max: u64) -> Vec<(std::net::SocketAddr, u32)> {
    let mut rng = Rng(42);
    addrs(n)
        .into_iter()
        .map(|a| (a, (rng.next_u64() % max + 1) as u32))
        .collect()
}

/// One heavy backend among light ones: the most rounds per slot.
fn one_heavy(n: usize) -> Vec<(std::net::SocketAddr, u32)> {
    addrs(n)
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a, if i == 0 { 1_000_000 } else { 1 }))
        .collect()
}

struct Bencher {
    measure: bool,
    /// Also run (or smoke-test) the cases that take seconds per call.
    slow: bool,
    filter: Option<String>,
}

impl Bencher {
    /// Times `f`, which does `ops` operations per call; prints time per op.
    fn run<R>(&self, name: &str, ops: u64, f: impl FnMut() -> R) {
        self.run_case(name, ops, false, f)
    }

    /// Like `run`, for a case that takes seconds: run only when measuring.
    fn run_slow<R>(&self, name: &str, ops: u64, f: impl FnMut() -> R) {
        self.run_case(name, ops, true, f)
    }

    fn run_case<R>(&self, name: &str, ops: u64, slow: bool, mut f: impl FnMut() -> R) {
        if self.filter.as_deref().is_some_and(|s| !name.contains(s)) || (slow && !self.slow) {
            return;
        }
        if !self.measure {
            black_box(f());
            println!("{name}: ok");
            return;
        }
        // Calls per sample: enough for ~50 ms.
        let start = Instant::now();
        black_box(f());
        let once = start.elapsed().max(Duration::from_nanos(1));
        let calls =
            (Duration::from_millis(50).as_nanos() / once.as_nanos()).clamp(1, 1_000_000) as u32;
        let count = if once > Duration::from_millis(500) {
            5
        } else {
            15
        };
        let mut samples: Vec<f64> = (0..count)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..calls {
                    black_box(f());
                }
                start.elapsed().as_nanos() as f64 / f64::from(calls) / ops as f64
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        println!(
            "{name:<44} median {:>12}  fastest {:>12}  per op",
            show(samples[samples.len() / 2]),
            show(samples[0])
        );
    }
}

fn show(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.2} ns")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let measure = args.iter().any(|a| a == "--bench");
    let b = Bencher {
        measure,
        slow: measure,
        filter: args.iter().find(|a| !a.starts_with('-')).cloned(),
    };
    let m = TableSize::DEFAULT;

    for n in [10, 100, 1000] {
        let set = equal(n);
        b.run(&format!("build/M=65537/N={n}/equal"), 1, || {
            Table::build(m, set.iter().copied())
        });
    }
    let set = random_weights(1000, 100);
    b.run("build/M=65537/N=1000/weights-1..100", 1, || {
        Table::build(m, set.iter().copied())
    });
    let set = one_heavy(1000);
    b.run("build/M=65537/N=1000/one-heavy", 1, || {
        Table::build(m, set.iter().copied())
    });
    let big = TableSize::at_least(655_373).unwrap();
    let set = equal(1000);
    b.run("build/M=655373/N=1000/equal", 1, || {
        Table::build(big, set.iter().copied())
    });
    let huge = TableSize::new(TableSize::MAX).unwrap();
    let set = equal(10_000);
    b.run_slow("build/M=16777213/N=10000/equal", 1, || {
        Table::build(huge, set.iter().copied())
    });

    let table = Table::build(m, equal(100)).unwrap();
    let mut rng = Rng(7);
    let hashes: Vec<u64> = (0..4096).map(|_| rng.next_u64()).collect();
    b.run("lookup/M=65537/N=100", hashes.len() as u64, || {
        hashes
            .iter()
            .map(|&h| table.lookup_index(h).unwrap())
            .fold(0u32, u32::wrapping_add)
    });

    let before = Table::build(m, equal(1000)).unwrap();
    let after = Table::build(m, equal(1000).into_iter().skip(1)).unwrap();
    b.run("changed_slots/M=65537/N=1000", 1, || {
        before.changed_slots(&after).unwrap()
    });
    b.run("fingerprint/M=65537/N=1000", 1, || before.fingerprint());

    quality(m);
}

/// Not timings: how evenly the default-size table shares slots, and how many
/// slots besides a removed backend's own move when it is removed.
fn quality(m: TableSize) {
    println!("quality/M=65537: N, worst |slots - ideal|, extra slots moved on removing one (worst of 10)");
    for (n, weights) in [
        (10, "equal"),
        (100, "equal"),
        (1000, "equal"),
        (1000, "1..100"),
    ] {
        let set = if weights == "equal" {
            equal(n)
        } else {
            random_weights(n, 100)
        };
        let table = Table::build(m, set.iter().copied()).unwrap();
        let total: f64 = set.iter().map(|&(_, w)| f64::from(w)).sum();
        let worst_share = table
            .backends()
            .iter()
            .map(|b| {
                (f64::from(b.slots()) - f64::from(m.get()) * f64::from(b.weight()) / total).abs()
            })
            .fold(0.0, f64::max);
        let worst_extra = (0..n)
            .step_by(n / 10)
            .map(|r| {
                let mut rest = set.clone();
                let (gone, _) = rest.remove(r);
                let after = Table::build(m, rest).unwrap();
                let own = table
                    .backends()
                    .iter()
                    .find(|b| *b.key() == gone)
                    .unwrap()
                    .slots();
                table.changed_slots(&after).unwrap() - own as usize
            })
            .max()
            .unwrap();
        println!(
            "quality/M=65537/N={n}/{weights:<7} share off by {worst_share:.2} slots; extra moved {worst_extra} ({:.2}% of M)",
            100.0 * worst_extra as f64 / f64::from(m.get())
        );
    }
}

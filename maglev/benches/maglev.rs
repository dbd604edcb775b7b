//! Criterion benchmarks: building tables, diffing them, looking up, and
//! fingerprinting; plus (printed, not timed) the memory a table and its build
//! take, and how evenly tables share slots and how few slots a removal moves.
//!
//! `cargo bench -p maglev` measures; `cargo bench -p maglev -- build/` runs
//! only the matching benchmarks. `cargo test` runs each benchmark once.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput};
use maglev::{Table, TableSize};
use testbed::fuzz::Rng;

/// Criterion measurement of the benchmark thread's CPU time
/// (`CLOCK_THREAD_CPUTIME_ID`): on a machine shared with other builds, wall
/// time also counts the time the thread waited for a core; this does not.
struct CpuTime;

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec, and the clock id is a
    // constant the kernel always supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Formats CPU times as criterion formats wall times.
static DURATION_FORMAT: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_time()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        DURATION_FORMAT.formatter()
    }
}

/// `n` backends `10.x.y.z:8080`.
fn addrs(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8080)))
        .collect()
}

fn equal(n: usize) -> Vec<(SocketAddr, u32)> {
    addrs(n).into_iter().map(|a| (a, 1)).collect()
}

/// Weights drawn from 1..=100 with a fixed seed.
fn weighted(n: usize) -> Vec<(SocketAddr, u32)> {
    let mut rng = Rng::new(42);
    addrs(n)
        .into_iter()
        .map(|a| (a, (rng.next() % 100 + 1) as u32))
        .collect()
}

/// One backend of weight 1,000,000 among ones of weight 1.
fn one_heavy(n: usize) -> Vec<(SocketAddr, u32)> {
    addrs(n)
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a, if i == 0 { 1_000_000 } else { 1 }))
        .collect()
}

const SIZES: [u32; 2] = [65_537, 655_373];

/// Build times, in the measurement `M` (wall or CPU time), as group `name`.
fn build<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let mut g = c.benchmark_group(name);
    for m in SIZES {
        let size = TableSize::new(m).expect("prime");
        if m > 100_000 {
            g.sample_size(20).measurement_time(Duration::from_secs(4));
        }
        let cases = [
            ("equal", 10, equal(10)),
            ("equal", 100, equal(100)),
            ("equal", 1000, equal(1000)),
            ("weights-1..100", 1000, weighted(1000)),
            ("one-heavy", 1000, one_heavy(1000)),
        ];
        for (kind, n, set) in cases {
            let id = BenchmarkId::from_parameter(format!("M={m}/N={n}/{kind}"));
            g.bench_with_input(id, &set, |b, set| {
                b.iter(|| Table::build(size, black_box(set).iter().copied()).expect("valid"))
            });
        }
    }
    g.finish();
}

fn diff(c: &mut Criterion) {
    let mut g = c.benchmark_group("diff");
    for m in SIZES {
        let size = TableSize::new(m).expect("prime");
        let before = Table::build(size, equal(1000)).expect("valid");
        // Remove one backend of 1000: about M / 1000 slots change.
        let after = Table::build(size, equal(1000).into_iter().skip(1)).expect("valid");
        g.throughput(Throughput::Elements(u64::from(m)));
        g.bench_function(
            BenchmarkId::new("diff", format!("M={m}/N=1000/remove-one")),
            |b| {
                b.iter(|| {
                    black_box(&before)
                        .diff(black_box(&after))
                        .expect("same size")
                })
            },
        );
        g.bench_function(
            BenchmarkId::new("changed_slots", format!("M={m}/N=1000/remove-one")),
            |b| {
                b.iter(|| {
                    black_box(&before)
                        .changed_slots(black_box(&after))
                        .expect("same size")
                })
            },
        );
    }
    g.finish();
}

fn lookup_and_fingerprint(c: &mut Criterion) {
    let size = TableSize::DEFAULT;
    let table = Table::build(size, equal(1000)).expect("valid");
    let mut rng = Rng::new(7);
    let hashes: Vec<u64> = (0..4096).map(|_| rng.next()).collect();
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(hashes.len() as u64));
    g.bench_function("M=65537/N=1000/4096-hashes", |b| {
        b.iter(|| {
            hashes
                .iter()
                .map(|&h| table.lookup_index(black_box(h)).unwrap_or(0))
                .fold(0u32, u32::wrapping_add)
        })
    });
    g.finish();
    c.bench_function("fingerprint/M=65537/N=1000", |b| {
        b.iter(|| black_box(&table).fingerprint())
    });
}

/// Not timed: bytes of each table and of its build's working set.
fn memory() {
    println!("memory: case, table heap bytes, build scratch bytes (besides the table)");
    for m in SIZES {
        let size = TableSize::new(m).expect("prime");
        for (kind, set) in [
            ("equal", equal(10)),
            ("equal", equal(100)),
            ("equal", equal(1000)),
            ("weights-1..100", weighted(1000)),
            ("one-heavy", one_heavy(1000)),
        ] {
            let n = set.len();
            let t = Table::build(size, set).expect("valid");
            println!(
                "memory/M={m}/N={n}/{kind}: table {} B, build scratch {} B",
                t.heap_bytes(),
                t.build_scratch_bytes()
            );
        }
    }
}

/// Not timed: how far slot counts are from their ideal share, and how many
/// slots move beyond the changed backend's own when one backend is removed
/// or added (worst and mean over 20 backend sets of random names).
fn quality() {
    println!("quality: M, N, weights: worst |slots - ideal|; extra slots moved removing one / adding one, worst (mean), % of M");
    for m in [16_381u32, 65_537, 131_071] {
        let size = TableSize::new(m).expect("prime");
        for n in [10usize, 50, 100, 200, 300, 400, 500, 655, 1000] {
            if n * 100 > m as usize {
                continue;
            }
            for weighted in [false, true] {
                quality_case(size, n, weighted);
            }
        }
    }
}

fn quality_case(size: TableSize, n: usize, weighted: bool) {
    let m = size.get();
    let (mut worst_share, mut worst_rm, mut sum_rm, mut worst_add, mut sum_add) =
        (0f64, 0f64, 0f64, 0f64, 0f64);
    const SETS: u64 = 20;
    for salt in 0..SETS {
        let mut rng = Rng::new(salt);
        let set: Vec<(String, u32)> = (0..=n)
            .map(|_| {
                let w = if weighted {
                    (rng.next() % 100 + 1) as u32
                } else {
                    1
                };
                (format!("{:016x}", rng.next()), w)
            })
            .collect();
        let base = Table::build(size, set[..n].to_vec()).expect("valid");
        let total: f64 = set[..n].iter().map(|&(_, w)| f64::from(w)).sum();
        for b in base.backends() {
            let ideal = f64::from(m) * f64::from(b.weight()) / total;
            worst_share = worst_share.max((f64::from(b.slots()) - ideal).abs());
        }
        // Add set[n].
        let plus = Table::build(size, set.iter().cloned()).expect("valid");
        let own = plus
            .index_of(set[n].0.as_bytes())
            .map_or(0, |i| plus.backends()[i as usize].slots());
        let add =
            (plus.changed_slots(&base).expect("same size") - own as usize) as f64 / f64::from(m);
        worst_add = worst_add.max(add);
        sum_add += add;
        // Remove one of the first n.
        let r = (rng.next() % n as u64) as usize;
        let mut rest = set[..n].to_vec();
        let (gone, _) = rest.remove(r);
        let after = Table::build(size, rest).expect("valid");
        let own = base
            .index_of(gone.as_bytes())
            .map_or(0, |i| base.backends()[i as usize].slots());
        let rm =
            (base.changed_slots(&after).expect("same size") - own as usize) as f64 / f64::from(m);
        worst_rm = worst_rm.max(rm);
        sum_rm += rm;
    }
    let kind = if weighted { "weights-1..100" } else { "equal" };
    println!(
        "quality/M={m}/N={n}/{kind}: share off by {worst_share:.2} slots; extra moved removing {:.2}% ({:.2}%), adding {:.2}% ({:.2}%)",
        100.0 * worst_rm,
        100.0 * sum_rm / SETS as f64,
        100.0 * worst_add,
        100.0 * sum_add / SETS as f64,
    );
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    memory();
    if measuring {
        quality();
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    build(&mut c, "build");
    diff(&mut c);
    lookup_and_fingerprint(&mut c);
    c.final_summary();
    let mut cpu = Criterion::default()
        .with_measurement(CpuTime)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    build(&mut cpu, "build-cpu");
    cpu.final_summary();
}

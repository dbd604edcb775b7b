//! The case budget every fuzz target (a proptest property) shares.

/// Cases a property runs when `PROPTEST_CASES` is not set: small enough for
/// a plain `cargo test`; `scripts/test.sh` raises it to a million.
pub const DEFAULT_CASES: u32 = 2048;

/// Cases per property: `PROPTEST_CASES` if it is a number, else
/// [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// One current-thread tokio runtime for all cases of a process's properties:
/// building one per case would cost more than the case itself.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread tokio runtime builds without I/O drivers")
    })
}

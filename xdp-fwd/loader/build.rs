//! Builds the eBPF program (`xdp-fwd-ebpf`) for bpfel-unknown-none with nightly
//! and bpf-linker, and leaves the object in OUT_DIR for `include_bytes!`.
use aya_build::{build_ebpf, Package, Toolchain};

fn main() -> anyhow::Result<()> {
    // The program also depends on the shared types crate.
    println!("cargo:rerun-if-changed=../common");
    build_ebpf(
        [Package {
            name: "xdp-fwd-ebpf",
            root_dir: "../ebpf",
            ..Default::default()
        }],
        Toolchain::default(),
    )
}

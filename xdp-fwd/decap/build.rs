//! Builds the decap eBPF program for bpfel-unknown-none into OUT_DIR.
use aya_build::{build_ebpf, Package, Toolchain};

fn main() -> anyhow::Result<()> {
    build_ebpf(
        [Package {
            name: "xdp-decap-ebpf",
            root_dir: "../decap-ebpf",
            ..Default::default()
        }],
        Toolchain::default(),
    )
}

//! Builds the decap eBPF program for bpfel-unknown-none into OUT_DIR.
use aya_build::{build_ebpf, Package, Toolchain};

fn main() -> anyhow::Result<()> {
    // aya-build watches the program's own directory; it also depends on
    // the shared types and frame-access crates.
    println!("cargo:rerun-if-changed=../common");
    println!("cargo:rerun-if-changed=../ebpf-frame");
    build_ebpf(
        [Package {
            name: "xdp-decap-ebpf",
            root_dir: "../decap-ebpf",
            ..Default::default()
        }],
        Toolchain::default(),
    )
}

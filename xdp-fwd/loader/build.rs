//! Builds the eBPF program (`xdp-fwd-ebpf`) for bpfel-unknown-none with nightly
//! and bpf-linker, and leaves the object in OUT_DIR for `include_bytes!`.
use aya_build::{build_ebpf, Package, Toolchain};

fn main() -> anyhow::Result<()> {
    // aya-build watches the program's own directory; it also depends on
    // the shared types and frame-access crates.
    println!("cargo:rerun-if-changed=../common");
    println!("cargo:rerun-if-changed=../ebpf-frame");
    build_ebpf(
        [Package {
            name: "xdp-fwd-ebpf",
            root_dir: "../ebpf",
            ..Default::default()
        }],
        Toolchain::default(),
    )
}

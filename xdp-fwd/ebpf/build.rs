//! Link flags for bpf-linker.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Only bpf-linker understands this flag (the crate only builds for BPF).
    if std::env::var("TARGET").is_ok_and(|t| t.starts_with("bpf")) {
        // bpf-linker's default (--bpf-expand-memcpy-in-order) makes LLVM turn
        // every memset/memcpy/memmove, even of 3 bytes, into a call to a
        // byte-at-a-time loop. Without it LLVM expands them into plain stores.
        println!("cargo:rustc-link-arg-bins=--disable-expand-memcpy-in-order");
    }
}

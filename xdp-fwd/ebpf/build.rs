//! Link flags for bpf-linker.
fn main() {
    // bpf-linker's default (--bpf-expand-memcpy-in-order) makes LLVM turn
    // every memset/memcpy/memmove, even of 3 bytes, into a call to a
    // byte-at-a-time loop. Without it LLVM expands them into plain stores.
    println!("cargo:rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}

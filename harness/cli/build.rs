//! The `ot-hil` executable is linked at a fixed address on Linux (`-no-pie`). Every virtual DK
//! is this executable started again (`ot-hil vdk`), 32 of them at once in a large run, and a
//! position-independent build of it carries about 40,000 relocations that the loader applies
//! in each new process, touching about 180 pages of its own: half of a virtual DK's start-up
//! CPU time. Linked at a fixed address, the linker applies them once. (The cost is address
//! space layout randomisation of the test harness's own code.)

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=ot-hil=-no-pie");
    }
}

// Shared by `cargo xtask codegen` and `tests/bootstrap.rs`: how the checked-in
// code is generated. Kept in one place so the freshness check regenerates
// exactly what the xtask writes.
//
// This file is `include!`d; it is not a module of the library.

/// The `.proto` files, relative to the `proto/` crate directory.
pub const PROTOS: &[&str] = &[
    "proto/umbra/telemetry/v1/telemetry.proto",
    "proto/umbra/fleet/v1/fleet.proto",
];

/// Generate Rust code for [`PROTOS`] into `out_dir` (needs `protoc` on PATH or `PROTOC`).
pub fn generate(crate_dir: &std::path::Path, out_dir: &std::path::Path) -> std::io::Result<()> {
    let protos: Vec<_> = PROTOS.iter().map(|p| crate_dir.join(p)).collect();
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .out_dir(out_dir)
        .compile_protos(&protos, &[crate_dir.join("proto")])
}

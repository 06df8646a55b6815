//! The checked-in code generated from `model/proto/ferry/control/v1/*.proto` must be what the
//! protos give today. To regenerate after editing a `.proto`:
//!
//! ```text
//! FERRY_REGENERATE_PROTO=1 cargo test -p ferry-runtime generated_proto_code_is_current
//! ```
//!
//! protox compiles the protos in Rust (no `protoc`); tonic-prost-build writes the messages
//! (into model, prost only) and the gRPC client and server (here, tonic).

use std::path::{Path, PathBuf};

const PROTOS: [&str; 4] = [
    "ferry/control/v1/snapshot.proto",
    "ferry/control/v1/control.proto",
    "ferry/control/v1/destination.proto",
    "ferry/control/v1/identity.proto",
];
const FILE: &str = "ferry.control.v1.rs";

fn generate(messages: &Path, services: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fds = protox::compile(PROTOS, [root.join("model/proto")]).expect("the protos compile");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .emit_rerun_if_changed(false)
        .out_dir(messages)
        .compile_fds(fds.clone())
        .expect("messages");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .extern_path(".ferry.control.v1", "::ferry_model::proto")
        .out_dir(services)
        .compile_fds(fds)
        .expect("services");
}

#[test]
fn generated_proto_code_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let checked_in: [(PathBuf, &str); 2] = [
        (root.join("model/src/proto"), "messages"),
        (root.join("runtime/src/subscribe"), "services"),
    ];
    let out = std::env::temp_dir().join(format!("ferry-proto-{}", std::process::id()));
    let (messages, services) = (out.join("messages"), out.join("services"));
    std::fs::create_dir_all(&messages).expect("temp dir");
    std::fs::create_dir_all(&services).expect("temp dir");
    generate(&messages, &services);
    let regenerate = std::env::var_os("FERRY_REGENERATE_PROTO").is_some();
    let mut stale = Vec::new();
    for (dir, kind) in checked_in {
        let fresh = std::fs::read_to_string(out.join(kind).join(FILE)).expect("generated");
        let path = dir.join(FILE);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
            if regenerate {
                std::fs::write(&path, &fresh).expect("write");
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        stale.is_empty(),
        "out of date with the protos: {stale:?}; regenerate with FERRY_REGENERATE_PROTO=1 cargo test -p ferry-runtime generated_proto_code_is_current"
    );
}

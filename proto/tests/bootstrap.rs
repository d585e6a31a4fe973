//! Fails when the checked-in generated code in `src/gen/` is stale: regenerates
//! it into a temporary directory and compares byte for byte.
//! Fix with `cargo xtask codegen`.

include!("../src/codegen.rs");

#[test]
fn generated_code_is_fresh() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = std::env::temp_dir().join(format!("umbra-proto-bootstrap-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    generate(crate_dir, &tmp).expect("codegen (is protoc installed? see README)");
    let mut checked = 0;
    for entry in std::fs::read_dir(&tmp).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let fresh = std::fs::read_to_string(&path).unwrap();
        let committed = std::fs::read_to_string(crate_dir.join("src/gen").join(&name))
            .unwrap_or_else(|_| panic!("src/gen/{name:?} missing: run `cargo xtask codegen`"));
        assert!(
            fresh == committed,
            "src/gen/{name:?} is stale: run `cargo xtask codegen` and commit the result"
        );
        checked += 1;
    }
    std::fs::remove_dir_all(&tmp).ok();
    assert_eq!(checked, PROTOS.len(), "one generated file per package");
}

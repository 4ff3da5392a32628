//! `tapedeck mesh package-filter`: the real `filter.wasm` written as an OCI image layout, read
//! back with every digest checked, unpacked by GNU tar as a registry client would see it.

mod support;

use std::path::Path;
use std::process::Command;

use tapedeck_mesh::oci::{self, LAYER_MEDIA_TYPE};
use tapedeck_mesh::{PackageArgs, package_filter};

fn package(out: &Path, tag: &str) -> oci::Packaged {
    let wasm = support::filter_wasm();
    package_filter(&PackageArgs {
        out: out.to_owned(),
        wasm,
        tag: tag.to_owned(),
    })
    .unwrap()
}

#[test]
fn the_layout_reads_back_with_every_digest_and_the_module_intact() {
    let wasm_path = support::filter_wasm();
    let wasm = std::fs::read(&wasm_path).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let packaged = package(tmp.path(), "0.1.0");
    assert_eq!(packaged.wasm_sha256, oci::sha256_hex(&wasm));
    let read = oci::read(tmp.path()).unwrap();
    assert_eq!(read.tag, "0.1.0");
    assert_eq!(read.manifest, packaged.manifest);
    assert_eq!(read.wasm, wasm);

    // The layout holds exactly the three blobs, each named by its own sha256.
    let mut blobs: Vec<String> = std::fs::read_dir(tmp.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    let mut expected = vec![
        packaged.manifest.hex().to_owned(),
        packaged.config.hex().to_owned(),
        packaged.layer.hex().to_owned(),
    ];
    expected.sort();
    assert_eq!(blobs, expected);
    for blob in &blobs {
        let bytes = std::fs::read(tmp.path().join("blobs/sha256").join(blob)).unwrap();
        assert_eq!(&oci::sha256_hex(&bytes), blob);
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], packaged.manifest.digest);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            tmp.path()
                .join("blobs/sha256")
                .join(packaged.manifest.hex()),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );

    // GNU tar, not our reader, finds plugin.wasm in the layer, byte for byte.
    let out = Command::new("tar")
        .args(["-xzOf"])
        .arg(tmp.path().join("blobs/sha256").join(packaged.layer.hex()))
        .arg("plugin.wasm")
        .output()
        .expect("tar runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == wasm,
        "tar extracted {} bytes, the module has {}",
        out.stdout.len(),
        wasm.len()
    );
}

#[test]
fn the_image_is_reproducible_and_the_tag_only_changes_the_index() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let first = package(a.path(), "0.1.0");
    let second = package(b.path(), "latest");
    assert_eq!(first, second, "same module, same digests");
}

#[test]
fn a_damaged_layout_is_refused_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let packaged = package(tmp.path(), "0.1.0");
    let layer = tmp.path().join("blobs/sha256").join(packaged.layer.hex());
    let mut bytes = std::fs::read(&layer).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&layer, &bytes).unwrap();
    let error = oci::read(tmp.path()).unwrap_err().to_string();
    assert!(error.contains("layer: blob's sha256 is"), "{error}");

    std::fs::remove_file(&layer).unwrap();
    let error = oci::read(tmp.path()).unwrap_err().to_string();
    assert!(error.contains(packaged.layer.hex()), "{error}");

    let not_wasm = tmp.path().join("not.wasm");
    std::fs::write(&not_wasm, b"hello").unwrap();
    let error = package_filter(&PackageArgs {
        out: tmp.path().join("x"),
        wasm: not_wasm,
        tag: "t".into(),
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("is not a Wasm module"), "{error}");
}

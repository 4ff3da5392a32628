//! `filter.wasm` as an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) that any
//! registry client pushes (`oras cp --from-oci-layout`, `skopeo copy oci:…`, `crane push`) and
//! Istio's `WasmPlugin` pulls.
//!
//! The image is the *compat* variant of the Wasm image specification Istio's image fetcher reads
//! (github.com/solo-io/wasm, `spec-compat.md`): an OCI image manifest with the standard
//! `application/vnd.oci.image.config.v1+json` config and exactly one
//! `application/vnd.oci.image.layer.v1.tar+gzip` layer holding `plugin.wasm`, annotated
//! `module.wasm.image/variant: compat`. Istio tries this variant first, and every registry
//! accepts its standard media types (the *oci* variant's custom ones are refused by some).
//!
//! The image is reproducible: the same module gives the same digest (tar and gzip times are 0).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The index's media type.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The config's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The one layer's media type.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file in the layer Istio loads.
pub const WASM_FILE_NAME: &str = "plugin.wasm";
/// The manifest annotation that marks the compat variant.
pub const VARIANT_ANNOTATION: (&str, &str) = ("module.wasm.image/variant", "compat");
/// The index annotation that names the tag.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Errors of packaging or reading back an image layout.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A file could not be read or written.
    #[error("oci layout: {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The layout is not what this module writes (or Istio reads).
    #[error("oci layout {dir}: {problem}")]
    Invalid {
        /// The layout.
        dir: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A content descriptor: media type, `sha256:…` digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

impl Descriptor {
    fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: format!("sha256:{}", sha256_hex(bytes)),
            size: bytes.len() as u64,
        }
    }

    fn to_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }

    /// The digest's hex part (what `WasmPlugin.spec.sha256` takes).
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A one-file ustar archive: `name` with `data`, mode 0644, owner 0, time 0.
fn tar_one(name: &str, data: &[u8]) -> Vec<u8> {
    tapedeck_analyzer::snapshot::archive::ustar([(name, data)], "root")
}

/// Reads `name` out of a ustar archive written by [`tar_one`] (or any plain ustar archive).
fn untar(archive: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut offset = 0;
    while offset + 512 <= archive.len() {
        let header = archive.get(offset..offset + 512)?;
        if header.iter().all(|&b| b == 0) {
            return None;
        }
        let entry = String::from_utf8_lossy(header.get(0..100)?)
            .trim_end_matches('\0')
            .to_owned();
        let size_field = String::from_utf8_lossy(header.get(124..136)?).into_owned();
        let size =
            usize::from_str_radix(size_field.trim_matches(|c| c == '\0' || c == ' '), 8).ok()?;
        let data = archive.get(offset + 512..offset + 512 + size)?;
        if entry.trim_start_matches("./") == name {
            return Some(data.to_vec());
        }
        offset += 512 + size.div_ceil(512) * 512;
    }
    None
}

/// What [`package`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packaged {
    /// The manifest: its digest is the image's, the `sha256` a `WasmPlugin` pins.
    pub manifest: Descriptor,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blob (`plugin.wasm` in a gzipped tar).
    pub layer: Descriptor,
    /// The module's own sha256 (hex).
    pub wasm_sha256: String,
}

/// Writes `wasm` as an OCI image layout in `out` (created if missing), tagged `tag`.
pub fn package(wasm: &[u8], out: &Path, tag: &str) -> Result<Packaged, OciError> {
    let tar = tar_one(WASM_FILE_NAME, wasm);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).map_err(io(out))?;
    let layer_bytes = gz.finish().map_err(io(out))?;
    let layer = Descriptor::of(LAYER_MEDIA_TYPE, &layer_bytes);
    let config_bytes = serde_json::to_vec(&json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&tar))]},
    }))
    .unwrap_or_default();
    let config = Descriptor::of(CONFIG_MEDIA_TYPE, &config_bytes);
    let manifest_bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.to_json(),
        "layers": [layer.to_json()],
        "annotations": {VARIANT_ANNOTATION.0: VARIANT_ANNOTATION.1},
    }))
    .unwrap_or_default();
    let manifest = Descriptor::of(MANIFEST_MEDIA_TYPE, &manifest_bytes);
    let mut index_entry = manifest.to_json();
    index_entry["annotations"] = json!({REF_NAME_ANNOTATION: tag});
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [index_entry],
    });

    let blobs = out.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
    for (descriptor, bytes) in [
        (&layer, &layer_bytes),
        (&config, &config_bytes),
        (&manifest, &manifest_bytes),
    ] {
        let path = blobs.join(descriptor.hex());
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    let path = out.join("oci-layout");
    std::fs::write(&path, b"{\"imageLayoutVersion\":\"1.0.0\"}").map_err(io(&path))?;
    let path = out.join("index.json");
    std::fs::write(&path, serde_json::to_vec(&index).unwrap_or_default()).map_err(io(&path))?;
    Ok(Packaged {
        manifest,
        config,
        layer,
        wasm_sha256: sha256_hex(wasm),
    })
}

/// What [`read`] found: the tag, the manifest's descriptor and the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    /// The `org.opencontainers.image.ref.name` of the index entry.
    pub tag: String,
    /// The manifest's descriptor, as the index gives it.
    pub manifest: Descriptor,
    /// `plugin.wasm` out of the layer.
    pub wasm: Vec<u8>,
}

/// Reads a layout back as Istio would pull it, checking every blob's size and digest, the media
/// types and the layer's content.
pub fn read(dir: &Path) -> Result<ReadBack, OciError> {
    let invalid = |problem: String| OciError::Invalid {
        dir: dir.to_owned(),
        problem,
    };
    let read_json = |name: &str| -> Result<Value, OciError> {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("{name} is not JSON: {e}")))
    };
    let layout = read_json("oci-layout")?;
    if layout["imageLayoutVersion"] != "1.0.0" {
        return Err(invalid(format!(
            "oci-layout has version {}",
            layout["imageLayoutVersion"]
        )));
    }
    let index = read_json("index.json")?;
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let [entry] = entries.as_slice() else {
        return Err(invalid(format!(
            "index.json lists {} manifests, not 1",
            entries.len()
        )));
    };
    let descriptor = |value: &Value, what: &str| -> Result<Descriptor, OciError> {
        match (
            value["mediaType"].as_str(),
            value["digest"].as_str(),
            value["size"].as_u64(),
        ) {
            (Some(media_type), Some(digest), Some(size)) => Ok(Descriptor {
                media_type: media_type.to_owned(),
                digest: digest.to_owned(),
                size,
            }),
            _ => Err(invalid(format!(
                "{what}: a descriptor needs mediaType, digest and size"
            ))),
        }
    };
    let blob = |d: &Descriptor, what: &str| -> Result<Vec<u8>, OciError> {
        let hex = d
            .digest
            .strip_prefix("sha256:")
            .ok_or_else(|| invalid(format!("{what}: digest {} is not sha256", d.digest)))?;
        let path = dir.join("blobs").join("sha256").join(hex);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        if bytes.len() as u64 != d.size {
            return Err(invalid(format!(
                "{what}: blob has {} bytes, descriptor says {}",
                bytes.len(),
                d.size
            )));
        }
        let actual = sha256_hex(&bytes);
        if actual != hex {
            return Err(invalid(format!(
                "{what}: blob's sha256 is {actual}, descriptor says {hex}"
            )));
        }
        Ok(bytes)
    };
    let manifest_descriptor = descriptor(entry, "index.json manifests[0]")?;
    let tag = entry["annotations"][REF_NAME_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if manifest_descriptor.media_type != MANIFEST_MEDIA_TYPE {
        return Err(invalid(format!(
            "manifest media type {}",
            manifest_descriptor.media_type
        )));
    }
    let manifest_bytes = blob(&manifest_descriptor, "manifest")?;
    let manifest: Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| invalid(format!("manifest is not JSON: {e}")))?;
    if manifest["schemaVersion"] != 2 || manifest["mediaType"] != MANIFEST_MEDIA_TYPE {
        return Err(invalid(
            "manifest: schemaVersion 2 and the OCI manifest media type expected".into(),
        ));
    }
    let config_descriptor = descriptor(&manifest["config"], "manifest config")?;
    if config_descriptor.media_type != CONFIG_MEDIA_TYPE {
        return Err(invalid(format!(
            "config media type {}",
            config_descriptor.media_type
        )));
    }
    let config: Value = serde_json::from_slice(&blob(&config_descriptor, "config")?)
        .map_err(|e| invalid(format!("config is not JSON: {e}")))?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let [layer] = layers.as_slice() else {
        return Err(invalid(format!(
            "the manifest has {} layers; the compat variant has 1",
            layers.len()
        )));
    };
    let layer_descriptor = descriptor(layer, "manifest layers[0]")?;
    if layer_descriptor.media_type != LAYER_MEDIA_TYPE {
        return Err(invalid(format!(
            "layer media type {}",
            layer_descriptor.media_type
        )));
    }
    let layer_bytes = blob(&layer_descriptor, "layer")?;
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer_bytes.as_slice())
        .read_to_end(&mut tar)
        .map_err(|e| invalid(format!("layer is not gzip: {e}")))?;
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    if config["rootfs"]["diff_ids"] != json!([diff_id]) {
        return Err(invalid(format!(
            "config rootfs.diff_ids is {}, the layer's is {diff_id}",
            config["rootfs"]["diff_ids"]
        )));
    }
    let wasm = untar(&tar, WASM_FILE_NAME)
        .ok_or_else(|| invalid(format!("the layer has no {WASM_FILE_NAME}")))?;
    if !wasm.starts_with(b"\0asm") {
        return Err(invalid(format!("{WASM_FILE_NAME} is not a Wasm module")));
    }
    Ok(ReadBack {
        tag,
        manifest: manifest_descriptor,
        wasm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tar_entry_reads_back_and_is_padded_to_blocks() {
        let data = b"\0asm\x01\0\0\0 and some more bytes";
        let tar = tar_one("plugin.wasm", data);
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(untar(&tar, "plugin.wasm").as_deref(), Some(&data[..]));
        assert_eq!(untar(&tar, "other"), None);
    }
}

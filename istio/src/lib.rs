//! `tapedeck mesh`: the capture install for an Istio mesh. It renders the `tapedeck` namespace,
//! the collector and the filter (as a `WasmPlugin` or an `EnvoyFilter`) for `kubectl apply -f -`,
//! writes the kustomize folder, and packages `filter.wasm` as an OCI image that Istio's
//! `WasmPlugin` pulls. docs/mesh.md is the walkthrough.
#![warn(missing_docs)]

pub mod kustomize;
pub mod names;
pub mod oci;
pub mod render;
pub mod snapshots;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use render::{FilterForm, Install, Parts, WasmSource};

/// The crate's version: the default tags of the filter and collector images.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The repository the release images are published under.
pub const IMAGE_REPOSITORY: &str = "ghcr.io/tapedeck";
/// Bytes of OS randomness in a generated key or token (shown as twice as many hex digits).
pub const SECRET_BYTES: usize = 32;
/// The shortest redaction key or token accepted from a file.
pub const MIN_SECRET_CHARS: usize = 32;

/// Errors of `tapedeck mesh`.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A flag's value is unusable.
    #[error("{flag}: {problem}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The operating system gave no random bytes.
    #[error("random key: the operating system's generator failed: {0}")]
    Random(String),
    /// Rendering YAML failed.
    #[error("rendering yaml: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// Packaging or reading the OCI layout failed.
    #[error(transparent)]
    Oci(#[from] oci::OciError),
    /// `filter.wasm` was not found.
    #[error("filter.wasm: {0}")]
    FilterWasm(String),
}

fn flag(flag: &'static str, problem: impl Into<String>) -> MeshError {
    MeshError::Flag {
        flag,
        problem: problem.into(),
    }
}

/// `tapedeck mesh …`.
#[derive(Debug, clap::Args)]
pub struct MeshArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: MeshCommand,
}

/// The `tapedeck mesh` subcommands.
// Parsed once per run; boxing the arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum MeshCommand {
    /// Print manifests for `kubectl apply -f -`, or write the kustomize folder.
    #[command(subcommand)]
    Render(RenderCommand),
    /// Write filter.wasm as an OCI image layout (oci-layout, index.json, blobs/sha256/…) that
    /// Istio's WasmPlugin pulls, and print its digest; push it with any registry client.
    PackageFilter(PackageArgs),
}

/// `tapedeck mesh render …`.
// Parsed once per run; boxing the arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum RenderCommand {
    /// The capture install: namespace `tapedeck`, the collector (StatefulSet, Service,
    /// ServiceAccount, token and redaction-key Secrets) and the filter on the selected pods, as
    /// multi-document YAML on standard output.
    Capture(CaptureArgs),
    /// Write the kustomize folder of the capture install (as checked in at istio/manifests/).
    Kustomize(KustomizeArgs),
}

/// Which filter module the sidecars load.
#[derive(Debug, Clone, clap::Args)]
pub struct WasmArgs {
    /// The filter module as an HTTP(S) URL (needs --sha256).
    #[arg(
        long,
        env = "TAPEDECK_MESH_WASM_URL",
        value_name = "URL",
        conflicts_with = "wasm_image",
        requires = "sha256"
    )]
    pub wasm_url: Option<String>,
    /// The sha256 (hex) of the module at --wasm-url, or of the image manifest of --wasm-image
    /// (the digest `tapedeck mesh package-filter` prints).
    #[arg(long, env = "TAPEDECK_MESH_WASM_SHA256", value_name = "HEX")]
    pub sha256: Option<String>,
    /// The filter as an OCI image reference (`registry/repo:tag`; pushed from the layout of
    /// `tapedeck mesh package-filter`); by default the release image
    /// `ghcr.io/tapedeck/filter:<version>`.
    #[arg(long, env = "TAPEDECK_MESH_WASM_IMAGE", value_name = "REF")]
    pub wasm_image: Option<String>,
}

impl WasmArgs {
    /// The module source these flags name.
    pub fn source(&self) -> Result<WasmSource, MeshError> {
        let sha256 = match &self.sha256 {
            Some(hex) => {
                let hex = hex.trim_start_matches("sha256:").to_ascii_lowercase();
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(flag(
                        "--sha256",
                        format!("expected 64 hex digits, got {hex:?}"),
                    ));
                }
                Some(hex)
            }
            None => None,
        };
        let url = match (&self.wasm_url, &self.wasm_image) {
            (Some(url), _) => {
                if !(url.starts_with("https://")
                    || url.starts_with("http://")
                    || url.starts_with("file://"))
                {
                    return Err(flag(
                        "--wasm-url",
                        format!("expected an http(s):// or file:// URL, got {url:?}"),
                    ));
                }
                url.clone()
            }
            (None, Some(image)) => format!("oci://{}", image.trim_start_matches("oci://")),
            (None, None) => format!("oci://{IMAGE_REPOSITORY}/filter:{VERSION}"),
        };
        Ok(WasmSource { url, sha256 })
    }
}

/// `tapedeck mesh render capture`.
#[derive(Debug, Clone, clap::Args)]
pub struct CaptureArgs {
    /// The namespace of the workloads to capture.
    #[arg(long, env = "TAPEDECK_MESH_NAMESPACE", value_name = "NS")]
    pub namespace: String,
    /// Labels of the pods to capture, `key=value` (repeatable or comma-separated; all must match).
    #[arg(
        long,
        env = "TAPEDECK_MESH_SELECTOR",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        required = true
    )]
    pub selector: Vec<String>,
    /// The share of exchanges captured, 0 to 1 (by trace id, so a trace is kept whole).
    #[arg(
        long,
        env = "TAPEDECK_MESH_SAMPLE",
        value_name = "RATE",
        default_value_t = 1.0
    )]
    pub sample: f64,
    /// The filter module.
    #[command(flatten)]
    pub wasm: WasmArgs,
    /// A file holding the redaction key (`redaction.hash_key`, at least 32 characters, one
    /// line); by default a random key is generated for this install. Pass the key of an
    /// existing install when adding a namespace, so markers stay comparable.
    #[arg(long, env = "TAPEDECK_MESH_REDACTION_KEY_FILE", value_name = "FILE")]
    pub redaction_key_file: Option<PathBuf>,
    /// A file holding the collector's bearer token (at least 32 characters, one line); by
    /// default a random token is generated.
    #[arg(long, env = "TAPEDECK_MESH_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Render the filter as an EnvoyFilter instead of a WasmPlugin.
    #[arg(long, env = "TAPEDECK_MESH_ENVOY_FILTER")]
    pub envoy_filter: bool,
    /// Print only the filter (for a further namespace of an existing install; pass its key and
    /// token files).
    #[arg(long, env = "TAPEDECK_MESH_CAPTURE_ONLY", requires_all = ["redaction_key_file", "token_file"])]
    pub capture_only: bool,
    /// The image that runs `tapedeck collector`; by default `ghcr.io/tapedeck/tapedeck:<version>`.
    #[arg(long, env = "TAPEDECK_MESH_COLLECTOR_IMAGE", value_name = "REF")]
    pub collector_image: Option<String>,
    /// The size of the collector's volume (write-ahead log, and Parquet files without S3).
    #[arg(
        long,
        env = "TAPEDECK_MESH_STORAGE_SIZE",
        value_name = "QUANTITY",
        default_value = "20Gi"
    )]
    pub storage_size: String,
    /// The storage class of the collector's volume; the cluster's default when not given.
    #[arg(long, env = "TAPEDECK_MESH_STORAGE_CLASS", value_name = "NAME")]
    pub storage_class: Option<String>,
    /// Keep the Parquet files in S3 (`s3://bucket/prefix`); credentials come from the Secret
    /// `tapedeck-s3` in namespace tapedeck, which you create (AWS_ACCESS_KEY_ID, …).
    #[arg(long, env = "TAPEDECK_MESH_S3_STORE", value_name = "URL")]
    pub s3_store: Option<String>,
}

/// `tapedeck mesh render kustomize`.
#[derive(Debug, Clone, clap::Args)]
pub struct KustomizeArgs {
    /// The folder to write (created if missing; existing files of the same names are replaced).
    #[arg(long, env = "TAPEDECK_MESH_OUT", value_name = "DIR")]
    pub out: PathBuf,
    /// The namespace of the workloads to capture; `default` unless given.
    #[arg(long, env = "TAPEDECK_MESH_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Labels of the pods to capture, `key=value`; `app=orders` unless given.
    #[arg(
        long,
        env = "TAPEDECK_MESH_SELECTOR",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub selector: Vec<String>,
    /// The filter module.
    #[command(flatten)]
    pub wasm: WasmArgs,
    /// The image that runs `tapedeck collector`; by default `ghcr.io/tapedeck/tapedeck:<version>`.
    #[arg(long, env = "TAPEDECK_MESH_COLLECTOR_IMAGE", value_name = "REF")]
    pub collector_image: Option<String>,
}

/// `tapedeck mesh package-filter`.
#[derive(Debug, Clone, clap::Args)]
pub struct PackageArgs {
    /// The folder the OCI image layout is written to.
    #[arg(long, env = "TAPEDECK_MESH_OUT", value_name = "DIR")]
    pub out: PathBuf,
    /// The module (`./x filter` builds it; `./x setup` exports its path as TAPEDECK_FILTER_WASM).
    #[arg(long, env = "TAPEDECK_FILTER_WASM", value_name = "FILE")]
    pub wasm: PathBuf,
    /// The tag recorded in index.json (`org.opencontainers.image.ref.name`).
    #[arg(long, env = "TAPEDECK_MESH_TAG", value_name = "TAG", default_value = VERSION)]
    pub tag: String,
}

/// Parses `key=value` labels.
pub fn parse_selector(labels: &[String]) -> Result<BTreeMap<String, String>, MeshError> {
    let mut out = BTreeMap::new();
    for label in labels {
        let Some((key, value)) = label.split_once('=') else {
            return Err(flag(
                "--selector",
                format!("expected key=value, got {label:?}"),
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(flag("--selector", format!("empty label key in {label:?}")));
        }
        out.insert(key.to_owned(), value.to_owned());
    }
    if out.is_empty() {
        return Err(flag("--selector", "at least one key=value label is needed"));
    }
    Ok(out)
}

/// `n` bytes from the operating system's generator, as hex.
pub fn random_secret() -> Result<String, MeshError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| MeshError::Random(e.to_string()))?;
    Ok(oci::hex(&bytes))
}

/// A key or token from a file: one line, trailing newline dropped, printable ASCII without
/// spaces or quotes, at least [`MIN_SECRET_CHARS`] characters.
pub fn read_secret(path: &Path, flag_name: &'static str) -> Result<String, MeshError> {
    let text = std::fs::read_to_string(path).map_err(|source| MeshError::Io {
        path: path.to_owned(),
        source,
    })?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.chars().count() < MIN_SECRET_CHARS {
        return Err(flag(
            flag_name,
            format!(
                "{}: at least {MIN_SECRET_CHARS} characters are needed, the file has {}",
                path.display(),
                secret.chars().count()
            ),
        ));
    }
    if let Some(bad) = secret
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\\' | '\''))
    {
        return Err(flag(
            flag_name,
            format!(
                "{}: {bad:?} is not allowed (printable ASCII without spaces or quotes)",
                path.display()
            ),
        ));
    }
    Ok(secret.to_owned())
}

fn collector_image(image: &Option<String>) -> String {
    image
        .clone()
        .unwrap_or_else(|| format!("{IMAGE_REPOSITORY}/tapedeck:{VERSION}"))
}

/// The install `render capture` prints, with its secrets read or generated.
pub fn capture_install(args: &CaptureArgs) -> Result<(Install, Parts), MeshError> {
    if !(0.0..=1.0).contains(&args.sample) {
        return Err(flag(
            "--sample",
            format!("must be within [0, 1], got {}", args.sample),
        ));
    }
    if args.namespace.is_empty() {
        return Err(flag("--namespace", "must not be empty"));
    }
    let hash_key = match &args.redaction_key_file {
        Some(path) => read_secret(path, "--redaction-key-file")?,
        None => random_secret()?,
    };
    let token = match &args.token_file {
        Some(path) => read_secret(path, "--token-file")?,
        None => random_secret()?,
    };
    if let Some(store) = &args.s3_store
        && !store.starts_with("s3://")
    {
        return Err(flag(
            "--s3-store",
            format!("expected s3://bucket/prefix, got {store:?}"),
        ));
    }
    let install = Install {
        namespace: args.namespace.clone(),
        selector: parse_selector(&args.selector)?,
        sample: args.sample,
        wasm: args.wasm.source()?,
        hash_key,
        token,
        collector_image: collector_image(&args.collector_image),
        storage_size: args.storage_size.clone(),
        storage_class: args.storage_class.clone(),
        s3_store: args.s3_store.clone(),
    };
    let parts = Parts {
        collector: !args.capture_only,
        filter: if args.envoy_filter {
            FilterForm::EnvoyFilter
        } else {
            FilterForm::WasmPlugin
        },
    };
    Ok((install, parts))
}

/// The YAML `render capture` prints.
pub fn render_capture(args: &CaptureArgs) -> Result<String, MeshError> {
    let (install, parts) = capture_install(args)?;
    Ok(render::to_yaml(&render::capture_install(&install, parts))?)
}

/// Writes the kustomize folder; returns the files written (relative paths).
pub fn write_kustomize(args: &KustomizeArgs) -> Result<Vec<String>, MeshError> {
    let (example_ns, example_selector) = kustomize::example();
    let namespace = args.namespace.clone().unwrap_or(example_ns);
    let selector = if args.selector.is_empty() {
        example_selector
    } else {
        parse_selector(&args.selector)?
    };
    let files = kustomize::files(
        &namespace,
        &selector,
        &args.wasm.source()?,
        &collector_image(&args.collector_image),
    )?;
    for (name, content) in &files {
        let path = args.out.join(name);
        let io = |source| MeshError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, content).map_err(|source| MeshError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(files.into_keys().collect())
}

/// Packages the filter; returns what was written.
pub fn package_filter(args: &PackageArgs) -> Result<oci::Packaged, MeshError> {
    let wasm_path = args.wasm.clone();
    let wasm = std::fs::read(&wasm_path).map_err(|source| MeshError::Io {
        path: wasm_path.clone(),
        source,
    })?;
    if !wasm.starts_with(b"\0asm") {
        return Err(MeshError::FilterWasm(format!(
            "{} is not a Wasm module",
            wasm_path.display()
        )));
    }
    Ok(oci::package(&wasm, &args.out, &args.tag)?)
}

/// Runs `tapedeck mesh …`, printing to standard output.
pub async fn run(args: MeshArgs) -> Result<(), MeshError> {
    match args.command {
        MeshCommand::Render(RenderCommand::Capture(args)) => {
            print!("{}", render_capture(&args)?);
            if args.redaction_key_file.is_none() {
                tracing::info!(
                    secret = names::REDACTION_SECRET,
                    namespace = names::NAMESPACE,
                    "Generated a random redaction key for this install; it is kept in the Secret."
                );
            }
        }
        MeshCommand::Render(RenderCommand::Kustomize(args)) => {
            for file in write_kustomize(&args)? {
                println!("{}", args.out.join(file).display());
            }
        }
        MeshCommand::PackageFilter(args) => {
            let packaged = package_filter(&args)?;
            let read = oci::read(&args.out)?;
            println!("{}", packaged.manifest.digest);
            eprintln!(
                "wrote {} (tag {}, plugin.wasm sha256 {}, {} bytes); push it with e.g. `oras cp --from-oci-layout {}:{} REGISTRY/filter:{}` and pin --sha256 {}",
                args.out.display(),
                read.tag,
                packaged.wasm_sha256,
                read.wasm.len(),
                args.out.display(),
                args.tag,
                args.tag,
                packaged.manifest.hex()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        mesh: MeshArgs,
    }

    fn parse(args: &[&str]) -> Result<MeshCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("mesh").chain(args.iter().copied()))
            .map(|c| c.mesh.command)
    }

    #[test]
    fn the_command_line_is_consistent_and_parses_the_documented_forms() {
        Cli::command().debug_assert();
        let command = parse(&[
            "render",
            "capture",
            "--namespace",
            "shop",
            "--selector",
            "app=orders,tier=api",
            "--sample",
            "0.1",
            "--wasm-image",
            "r.example/f:1",
            "--sha256",
            &"a".repeat(64),
        ])
        .unwrap();
        let MeshCommand::Render(RenderCommand::Capture(args)) = command else {
            panic!("not render capture: {command:?}");
        };
        assert_eq!(args.selector, ["app=orders", "tier=api"]);
        assert_eq!(args.wasm.source().unwrap().url, "oci://r.example/f:1");
        // --wasm-url needs --sha256, and excludes --wasm-image.
        assert!(
            parse(&[
                "render",
                "capture",
                "--namespace",
                "s",
                "--selector",
                "a=b",
                "--wasm-url",
                "https://x/f.wasm"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "render",
                "capture",
                "--namespace",
                "s",
                "--selector",
                "a=b",
                "--wasm-image",
                "r/f:1",
                "--wasm-url",
                "https://x/f.wasm",
                "--sha256",
                &"a".repeat(64)
            ])
            .is_err()
        );
        // --capture-only needs the existing install's key and token.
        assert!(
            parse(&[
                "render",
                "capture",
                "--namespace",
                "s",
                "--selector",
                "a=b",
                "--capture-only"
            ])
            .is_err()
        );
        assert!(matches!(
            parse(&["package-filter", "--out", "d", "--wasm", "f.wasm"]).unwrap(),
            MeshCommand::PackageFilter(PackageArgs { tag, .. }) if tag == VERSION
        ));
    }
}

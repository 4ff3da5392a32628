//! `tapedeck filter …`: the capture filter's configuration, checked before it is deployed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use tapedeck_filter::config::Config;

#[derive(Debug, Subcommand)]
pub(crate) enum FilterCommand {
    /// Check a filter configuration (the JSON of `WasmPlugin.spec.pluginConfig`) exactly as the
    /// filter will on `on_configure`. Exits 0 when valid, 1 with the problem when not.
    CheckConfig {
        /// The JSON file, or `-` for standard input.
        file: PathBuf,
    },
}

pub(crate) fn run(command: FilterCommand) -> Result<ExitCode> {
    match command {
        FilterCommand::CheckConfig { file } => {
            let bytes = if file.as_os_str() == "-" {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                    .context("reading standard input")?;
                bytes
            } else {
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?
            };
            match Config::parse(&bytes) {
                Ok(config) => {
                    println!(
                        "{}: valid (collector cluster {:?}, sampling rate {}, {} redacted headers, {} redacted JSON fields)",
                        file.display(),
                        config.collector.cluster,
                        config.sampling.rate,
                        config.redacted_headers().len(),
                        config.redaction.json_fields.len()
                    );
                    if config.redaction.hash_key.is_none() {
                        println!(
                            "warning: redaction.hash_key is not set; the built-in key will be used"
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("{}: {error}", file.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

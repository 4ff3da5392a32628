//! `tapedeck mesh …`: the Istio capture install (tapedeck-mesh does the work).

use std::process::ExitCode;

pub(crate) async fn run(args: tapedeck_mesh::MeshArgs) -> anyhow::Result<ExitCode> {
    tapedeck_mesh::run(args).await?;
    Ok(ExitCode::SUCCESS)
}

//! The snapshot archive: a snapshot's three files as one ustar archive (what
//! `tar -cf - snapshot.json inbound.jsonl outbound.jsonl` writes), the body of
//! `PUT /v1/snapshots/{id}` on the collector's HTTP port ([`API_PATH`]). [`tar`] writes one
//! (`tapedeck snapshot push`, the operator), [`untar`] extracts one, ustar or GNU tar, refusing
//! any other entry (the collector's snapshot API).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{INBOUND_FILE, MANIFEST_FILE, OUTBOUND_FILE};

/// The path of the snapshot API on the collector's HTTP port, where archives are `PUT`
/// (`{API_PATH}/{id}`) and files read back (`{API_PATH}/{id}/{file}`).
pub const API_PATH: &str = "/v1/snapshots";
/// The files of a snapshot, in the order they are archived and sent.
pub const FILES: [&str; 3] = [MANIFEST_FILE, INBOUND_FILE, OUTBOUND_FILE];

/// Why an archive could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive is malformed or holds something other than a snapshot's files.
    #[error("snapshot archive: {0}")]
    Malformed(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

const BLOCK: usize = 512;

/// A ustar archive of `files` (name, contents): mode 0644, owner 0, time 0.
pub fn tar(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    ustar(files.iter().map(|(name, data)| (*name, &data[..])), "")
}

/// A ustar archive of `files` (name, contents): mode 0644, uid and gid 0, time 0, owner and
/// group named `owner` (none when empty). The one ustar writer of the project: snapshots are
/// sent as [`tar`], and the mesh's OCI image layer (`tapedeck_mesh::oci`) is one of these with
/// `root`, whose bytes are part of the layer's digest.
pub fn ustar<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>, owner: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut header = [0u8; BLOCK];
        let mut field =
            |at: usize, value: &[u8]| header[at..at + value.len()].copy_from_slice(value);
        field(0, name.as_bytes());
        field(100, b"0000644\0");
        field(108, b"0000000\0");
        field(116, b"0000000\0");
        field(124, format!("{:011o}\0", data.len()).as_bytes());
        field(136, b"00000000000\0");
        field(156, b"0");
        field(257, b"ustar\0");
        field(263, b"00");
        field(265, owner.as_bytes());
        field(297, owner.as_bytes());
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// Extracts a snapshot archive (ustar or GNU tar, as `tar -cf` writes it) into `dir`: regular
/// files named `snapshot.json`, `inbound.jsonl` or `outbound.jsonl` (a leading `./` is fine);
/// directory entries and pax headers are skipped; anything else is refused, as is a file twice.
pub fn untar(mut archive: impl Read, dir: &Path) -> Result<Vec<String>, ArchiveError> {
    let mut written = Vec::new();
    let mut header = [0u8; BLOCK];
    let short = |e: std::io::Error| ArchiveError::Malformed(format!("truncated: {e}"));
    loop {
        archive.read_exact(&mut header).map_err(short)?;
        if header.iter().all(|&b| b == 0) {
            return Ok(written);
        }
        let mut blank = header;
        blank[148..156].fill(b' ');
        let sum: u32 = blank.iter().map(|&b| u32::from(b)).sum();
        let recorded = octal(&header[148..156])
            .ok_or_else(|| ArchiveError::Malformed("a header's checksum is not octal".into()))?;
        if u64::from(sum) != recorded {
            return Err(ArchiveError::Malformed(
                "a header's checksum does not match (not a tar archive?)".into(),
            ));
        }
        let cut = |field: &[u8]| {
            let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
            String::from_utf8_lossy(&field[..end]).into_owned()
        };
        let mut name = cut(&header[0..100]);
        if &header[257..262] == b"ustar" {
            let prefix = cut(&header[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        let size = octal(&header[124..136])
            .ok_or_else(|| ArchiveError::Malformed(format!("{name}: size is not octal")))?;
        let padded = size.next_multiple_of(BLOCK as u64);
        let kind = header[156];
        let name = name.trim_start_matches("./").to_owned();
        match kind {
            b'0' | 0 if FILES.contains(&name.as_str()) => {
                if written.contains(&name) {
                    return Err(ArchiveError::Malformed(format!("{name} appears twice")));
                }
                let path = dir.join(&name);
                let mut file = std::fs::File::create(&path).map_err(io(&path))?;
                let copied =
                    std::io::copy(&mut (&mut archive).take(size), &mut file).map_err(io(&path))?;
                if copied != size {
                    return Err(ArchiveError::Malformed(format!("{name}: truncated")));
                }
                std::io::copy(
                    &mut (&mut archive).take(padded - size),
                    &mut std::io::sink(),
                )
                .map_err(short)?;
                written.push(name);
            }
            b'5' | b'x' | b'g' => {
                std::io::copy(&mut (&mut archive).take(padded), &mut std::io::sink())
                    .map_err(short)?;
            }
            _ => {
                return Err(ArchiveError::Malformed(format!(
                    "unexpected entry {name:?} (type {:?}): a snapshot archive holds {} only",
                    kind as char,
                    FILES.join(", ")
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_round_trips_and_refuses_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let archive = tar(&[
            ("snapshot.json", b"{}\n".to_vec()),
            ("inbound.jsonl", vec![b'a'; 700]),
            ("outbound.jsonl", Vec::new()),
        ]);
        assert_eq!(archive.len() % BLOCK, 0);
        let names = untar(archive.as_slice(), dir.path()).unwrap();
        assert_eq!(names, FILES);
        assert_eq!(
            std::fs::read(dir.path().join("inbound.jsonl")).unwrap(),
            vec![b'a'; 700]
        );
        let other = tempfile::tempdir().unwrap();
        let stranger = tar(&[("../etc/passwd", b"x".to_vec())]);
        assert!(untar(stranger.as_slice(), other.path()).is_err());
        let twice = tar(&[
            ("inbound.jsonl", b"x".to_vec()),
            ("inbound.jsonl", b"y".to_vec()),
        ]);
        assert!(untar(twice.as_slice(), other.path()).is_err());
        let mut corrupt = tar(&[("inbound.jsonl", b"x".to_vec())]);
        corrupt[0] = b'X';
        assert!(untar(corrupt.as_slice(), other.path()).is_err());
        assert!(untar(&archive[..600], other.path()).is_err());
    }

    #[test]
    fn gnu_tar_archives_are_read() {
        let dir = tempfile::tempdir().unwrap();
        for name in FILES {
            std::fs::write(dir.path().join(name), format!("{name}\n")).unwrap();
        }
        let output = std::process::Command::new("tar")
            .args(["-cf", "-", "-C"])
            .arg(dir.path())
            .args(["./snapshot.json", "inbound.jsonl", "outbound.jsonl"])
            .output()
            .expect("tar runs (GNU tar is part of the build image)");
        assert!(output.status.success());
        let out = tempfile::tempdir().unwrap();
        let mut names = untar(output.stdout.as_slice(), out.path()).unwrap();
        names.sort();
        assert_eq!(names, ["inbound.jsonl", "outbound.jsonl", "snapshot.json"]);
        assert_eq!(
            std::fs::read_to_string(out.path().join("outbound.jsonl")).unwrap(),
            "outbound.jsonl\n"
        );
    }
}

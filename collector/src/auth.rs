//! The collector's token check: one definition for every port that takes `--token`.
//!
//! - ingest (the `Capture` gRPC service) and the snapshot API (`/v1/snapshots`):
//!   `authorization: Bearer TOKEN` only ([`Schemes::Bearer`]);
//! - Flight SQL and the viewer mounted under `/ui` (`tapedeck collector --ui`): `Bearer TOKEN`,
//!   or basic authentication with the token as the password and any user name, for clients
//!   and browsers that log in with a user and password ([`Schemes::BearerOrBasic`]).
//!
//! The scheme is matched in any case; the token is compared in time that depends only on the
//! lengths of the two strings.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The `authorization` schemes a port accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schemes {
    /// `Bearer TOKEN` only.
    Bearer,
    /// `Bearer TOKEN`, or `Basic base64(USER:TOKEN)` (any user name).
    BearerOrBasic,
}

/// Whether an `authorization` header value carries `token` in one of `schemes`.
pub fn credentials_match(header: &[u8], token: &[u8], schemes: Schemes) -> bool {
    let header = header.trim_ascii();
    let Some(space) = header.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, value) = (&header[..space], header[space + 1..].trim_ascii());
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return constant_time_eq(value, token);
    }
    if schemes == Schemes::BearerOrBasic && scheme.eq_ignore_ascii_case(b"basic") {
        let Ok(decoded) = BASE64.decode(value) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        return constant_time_eq(&decoded[colon + 1..], token);
    }
    false
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        difference |= x ^ y;
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_and_password: &str) -> Vec<u8> {
        format!("Basic {}", BASE64.encode(user_and_password)).into_bytes()
    }

    #[test]
    fn bearer_is_accepted_by_both_and_compared_exactly() {
        for schemes in [Schemes::Bearer, Schemes::BearerOrBasic] {
            for right in [
                &b"Bearer s3cret"[..],
                b"bearer s3cret",
                b"BEARER s3cret",
                b" Bearer  s3cret ",
            ] {
                assert!(
                    credentials_match(right, b"s3cret", schemes),
                    "{schemes:?} {}",
                    String::from_utf8_lossy(right)
                );
            }
            for wrong in [
                &b"Bearer s3cre"[..],
                b"Bearer s3cret2",
                b"Bearer S3CRET",
                b"Bearer s3c ret",
                b"Basic s3cret",
                b"Token s3cret",
                b"s3cret",
                b"",
                b"Bearer ",
                b"Bearer",
            ] {
                assert!(
                    !credentials_match(wrong, b"s3cret", schemes),
                    "{schemes:?} {}",
                    String::from_utf8_lossy(wrong)
                );
            }
        }
    }

    #[test]
    fn basic_is_accepted_only_where_asked_for() {
        for right in [basic("anyone:s3cret"), basic(":s3cret")] {
            assert!(credentials_match(&right, b"s3cret", Schemes::BearerOrBasic));
            assert!(!credentials_match(&right, b"s3cret", Schemes::Bearer));
        }
        let lower = format!("basic {}", BASE64.encode("u:s3cret")).into_bytes();
        assert!(credentials_match(&lower, b"s3cret", Schemes::BearerOrBasic));
        for wrong in [
            basic("anyone:s3cre"),
            basic("anyone:s3cret2"),
            basic("s3cret"),
            basic("s3cret:"),
            basic("a:b:s3cret"),
            b"Basic s3cret".to_vec(),
            b"Basic !!!".to_vec(),
            b"Basic ".to_vec(),
        ] {
            assert!(
                !credentials_match(&wrong, b"s3cret", Schemes::BearerOrBasic),
                "{}",
                String::from_utf8_lossy(&wrong)
            );
        }
    }
}

//! Re-signing recorded JWTs so the build under test accepts them at replay time.
//!
//! A recorded token keeps its own header and claims; only what replay must change changes:
//! `alg` and `kid` come from the configured key, the numeric time claims (`exp`, `iat`, `nbf`)
//! move by the replay offset so that a token valid for 15 minutes when recorded is valid for 15
//! minutes from its replayed issue time, and claims the user overrides (`iss`, `aud`, …) are
//! set. The recorded signature is dropped, so a token whose signature the filter redacted is
//! re-signed like any other.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value};

/// What went wrong loading a key or re-signing a token.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The key file could not be read.
    #[error("jwt key {path}: {source}")]
    ReadKey {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key is not usable with the algorithm.
    #[error("jwt key {what}: {message}")]
    BadKey {
        /// The file or a description of the key.
        what: String,
        /// Why.
        message: String,
    },
    /// The algorithm is not one tapedeck signs with.
    #[error(
        "unknown jwt algorithm {0:?} (expected HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256 or ES384)"
    )]
    UnknownAlgorithm(String),
    /// The recorded value is not a JWT whose header and claims are JSON objects.
    #[error("not a jwt: {0}")]
    NotAJwt(&'static str),
    /// Signing failed.
    #[error("signing the jwt: {0}")]
    Sign(String),
}

/// A key that signs re-dated tokens: an HMAC secret, or an RSA or EC private key.
#[derive(Clone)]
pub struct JwtKey {
    algorithm: Algorithm,
    alg: &'static str,
    kid: Option<String>,
    key: EncodingKey,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material.
        f.debug_struct("JwtKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

const ALGORITHMS: [(&str, Algorithm); 11] = [
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
];

fn algorithm(name: &str) -> Result<(&'static str, Algorithm), JwtError> {
    ALGORITHMS
        .iter()
        .find(|(word, _)| word.eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| JwtError::UnknownAlgorithm(name.to_owned()))
}

impl JwtKey {
    /// Reads a `--jwt-key` spec: `[ALG:]PATH[#KID]`. A PEM file holds an RSA or EC private key
    /// (PKCS #1 or PKCS #8 for RSA, PKCS #8 for EC): RS256 or ES256/ES384 by the curve unless
    /// `ALG` says otherwise. Any other file is an HMAC secret (HS256 unless `ALG` says
    /// otherwise), its bytes as they are but for one trailing line break.
    pub fn parse_spec(spec: &str) -> Result<JwtKey, JwtError> {
        let (spec, kid) = match spec.rsplit_once('#') {
            Some((path, kid)) if !kid.is_empty() => (path, Some(kid.to_owned())),
            _ => (spec, None),
        };
        let (alg, path) = match spec.split_once(':') {
            Some((word, path)) if algorithm(word).is_ok() => (Some(word), path),
            _ => (None, spec),
        };
        JwtKey::from_file(Path::new(path), alg, kid)
    }

    /// Loads a key file, as [`JwtKey::parse_spec`] describes.
    pub fn from_file(
        path: &Path,
        alg: Option<&str>,
        kid: Option<String>,
    ) -> Result<JwtKey, JwtError> {
        let bytes = std::fs::read(path).map_err(|source| JwtError::ReadKey {
            path: path.display().to_string(),
            source,
        })?;
        let what = path.display().to_string();
        if bytes.starts_with(b"-----BEGIN") {
            JwtKey::from_pem(&bytes, alg, kid, &what)
        } else {
            let secret = bytes
                .strip_suffix(b"\r\n")
                .or_else(|| bytes.strip_suffix(b"\n"))
                .unwrap_or(&bytes);
            JwtKey::hmac(alg.unwrap_or("HS256"), secret, kid)
        }
    }

    /// An HMAC key (`HS256`, `HS384`, `HS512`).
    pub fn hmac(alg: &str, secret: &[u8], kid: Option<String>) -> Result<JwtKey, JwtError> {
        let (alg, algorithm) = algorithm(alg)?;
        if !alg.starts_with("HS") {
            return Err(JwtError::BadKey {
                what: "secret".into(),
                message: format!("{alg} needs a PEM private key, not a secret"),
            });
        }
        if secret.is_empty() {
            return Err(JwtError::BadKey {
                what: "secret".into(),
                message: "the secret is empty".into(),
            });
        }
        Ok(JwtKey {
            algorithm,
            alg,
            kid,
            key: EncodingKey::from_secret(secret),
        })
    }

    /// An RSA or EC private key in PEM.
    pub fn from_pem(
        pem: &[u8],
        alg: Option<&str>,
        kid: Option<String>,
        what: &str,
    ) -> Result<JwtKey, JwtError> {
        let bad = |message: String| JwtError::BadKey {
            what: what.to_owned(),
            message,
        };
        let candidates: Vec<(&'static str, Algorithm)> = match alg {
            Some(name) => vec![algorithm(name)?],
            None => ["RS256", "ES256", "ES384"]
                .iter()
                .filter_map(|name| algorithm(name).ok())
                .collect(),
        };
        let mut last = String::from("no algorithm fits the key");
        for (alg, algorithm) in candidates {
            let key = match algorithm {
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512 => EncodingKey::from_rsa_pem(pem),
                Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
                _ => return Err(bad(format!("{alg} needs a secret, not a PEM key"))),
            };
            let key = match key {
                Ok(key) => key,
                Err(error) => {
                    last = format!("not a {alg} private key: {error}");
                    continue;
                }
            };
            // A trial signature: an EC key of the other curve, or a public key, fails here
            // rather than on the first replayed request.
            match jsonwebtoken::crypto::sign(b"tapedeck", &key, algorithm) {
                Ok(_) => {
                    return Ok(JwtKey {
                        algorithm,
                        alg,
                        kid,
                        key,
                    });
                }
                Err(error) => last = format!("cannot sign {alg} with it: {error}"),
            }
        }
        Err(bad(last))
    }

    /// The algorithm tokens are signed with (`RS256`).
    pub fn alg(&self) -> &str {
        self.alg
    }

    /// The key id written into re-signed tokens' headers, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

/// The numeric claims that say when a token holds.
pub const TIME_CLAIMS: [&str; 3] = ["exp", "iat", "nbf"];

/// Re-signs a recorded JWT with `key`: its header and claims kept, `alg` and `kid` set from the
/// key (a recorded `kid` is dropped when the key has none), the numeric time claims moved by
/// `offset_s` seconds, and `overrides` set as claims. The recorded signature is ignored.
pub fn resign(
    token: &str,
    key: &JwtKey,
    offset_s: i64,
    overrides: &[(String, Value)],
) -> Result<String, JwtError> {
    let mut parts = token.trim().splitn(3, '.');
    let (header, claims) = match (parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(claims), Some(_signature)) => (header, claims),
        _ => return Err(JwtError::NotAJwt("expected three dot-separated parts")),
    };
    let mut header = decode_object(header).ok_or(JwtError::NotAJwt(
        "the header is not a base64url JSON object",
    ))?;
    let mut claims = decode_object(claims).ok_or(JwtError::NotAJwt(
        "the claims are not a base64url JSON object",
    ))?;
    header.insert("alg".into(), Value::String(key.alg.to_owned()));
    match &key.kid {
        Some(kid) => {
            header.insert("kid".into(), Value::String(kid.clone()));
        }
        None => {
            header.remove("kid");
        }
    }
    for name in TIME_CLAIMS {
        if let Some(value) = claims.get_mut(name) {
            *value = moved(value, offset_s);
        }
    }
    for (name, value) in overrides {
        claims.insert(name.clone(), value.clone());
    }
    let mut message = encode_object(&header);
    message.push('.');
    message.push_str(&encode_object(&claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key.key, key.algorithm)
        .map_err(|error| JwtError::Sign(error.to_string()))?;
    message.push('.');
    message.push_str(&signature);
    Ok(message)
}

fn moved(value: &Value, offset_s: i64) -> Value {
    match value {
        Value::Number(number) => {
            if let Some(seconds) = number.as_i64() {
                Value::from(seconds.saturating_add(offset_s))
            } else if let Some(seconds) = number.as_f64() {
                serde_json::Number::from_f64(seconds + offset_s as f64)
                    .map(Value::Number)
                    .unwrap_or_else(|| value.clone())
            } else {
                value.clone()
            }
        }
        // A time claim that is not a number is not one JWT verifiers read: left as it is.
        other => other.clone(),
    }
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn encode_object(map: &Map<String, Value>) -> String {
    // Serializing a map of JSON values cannot fail.
    let json = serde_json::to_vec(map).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/jwt/");

    fn recorded() -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"prod-2026"}"#);
        let claims = URL_SAFE_NO_PAD.encode(
            br#"{"sub":"cus_001000","iss":"https://auth.shop","iat":1795784400,"exp":1795785300,"scope":["orders:write"]}"#,
        );
        format!("{header}.{claims}.tapedeck-redacted:hmac-sha256:00ff")
    }

    fn verify(token: &str, key: &DecodingKey, alg: Algorithm) -> Map<String, Value> {
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .unwrap_or_else(|error| panic!("{alg:?} token does not verify: {error}"))
            .claims
    }

    #[test]
    fn hmac_resigned_tokens_verify_with_moved_claims() {
        let key = JwtKey::parse_spec(&format!("{DATA}hmac-test-only.key#k1")).unwrap();
        assert_eq!((key.alg(), key.kid()), ("HS256", Some("k1")));
        let overrides = [("iss".to_owned(), Value::from("https://auth.staging"))];
        let token = resign(&recorded(), &key, 86_400, &overrides).unwrap();
        let claims = verify(
            &token,
            &DecodingKey::from_secret(b"replay-test-secret"),
            Algorithm::HS256,
        );
        assert_eq!(claims["iat"], 1_795_870_800);
        assert_eq!(claims["exp"], 1_795_871_700);
        assert_eq!(claims["sub"], "cus_001000");
        assert_eq!(claims["scope"], serde_json::json!(["orders:write"]));
        assert_eq!(claims["iss"], "https://auth.staging");
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        // A trailing newline of the secret file is not part of the secret.
        let wrong = DecodingKey::from_secret(b"replay-test-secret\n");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        assert!(jsonwebtoken::decode::<Map<String, Value>>(&token, &wrong, &validation).is_err());
    }

    #[test]
    fn rsa_and_ec_keys_sign_by_their_kind() {
        let rsa = JwtKey::parse_spec(&format!("{DATA}rsa-test-only.pem")).unwrap();
        assert_eq!((rsa.alg(), rsa.kid()), ("RS256", None));
        let token = resign(&recorded(), &rsa, -60, &[]).unwrap();
        let public = std::fs::read(format!("{DATA}rsa-test-only.pub.pem")).unwrap();
        let claims = verify(
            &token,
            &DecodingKey::from_rsa_pem(&public).unwrap(),
            Algorithm::RS256,
        );
        assert_eq!(claims["iat"], 1_795_784_340);
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().kid,
            None,
            "the prod kid is dropped"
        );

        let ps = JwtKey::parse_spec(&format!("PS256:{DATA}rsa-test-only.pem")).unwrap();
        let token = resign(&recorded(), &ps, 0, &[]).unwrap();
        verify(
            &token,
            &DecodingKey::from_rsa_pem(&public).unwrap(),
            Algorithm::PS256,
        );

        let ec = JwtKey::parse_spec(&format!("{DATA}ec-p256-test-only.pem#ec1")).unwrap();
        assert_eq!(ec.alg(), "ES256");
        let token = resign(&recorded(), &ec, 0, &[]).unwrap();
        let public = std::fs::read(format!("{DATA}ec-p256-test-only.pub.pem")).unwrap();
        verify(
            &token,
            &DecodingKey::from_ec_pem(&public).unwrap(),
            Algorithm::ES256,
        );
    }

    #[test]
    fn bad_keys_and_tokens_are_errors() {
        let missing = JwtKey::parse_spec("/nonexistent/key").unwrap_err();
        assert!(
            missing.to_string().starts_with("jwt key /nonexistent/key:"),
            "{missing}"
        );
        let wrong_curve =
            JwtKey::parse_spec(&format!("ES384:{DATA}ec-p256-test-only.pem")).unwrap_err();
        assert!(wrong_curve.to_string().contains("ES384"), "{wrong_curve}");
        let rsa_as_hmac =
            JwtKey::parse_spec(&format!("RS256:{DATA}hmac-test-only.key")).unwrap_err();
        assert!(
            rsa_as_hmac.to_string().contains("needs a PEM private key"),
            "{rsa_as_hmac}"
        );
        assert!(matches!(
            JwtKey::hmac("none", b"x", None),
            Err(JwtError::UnknownAlgorithm(_))
        ));
        let key = JwtKey::hmac("HS256", b"s3cr3t-value", None).unwrap();
        assert!(matches!(
            resign("abc", &key, 0, &[]),
            Err(JwtError::NotAJwt(_))
        ));
        assert!(matches!(
            resign("eyJhIjoxfQ.bm90IGpzb24.sig", &key, 0, &[]),
            Err(JwtError::NotAJwt(_))
        ));
        assert!(
            !format!("{key:?}").contains("s3cr3t"),
            "the secret never shows"
        );
    }
}

//! Redaction: secrets are replaced before an exchange leaves the pod.
//!
//! A secret becomes `tapedeck-redacted:hmac-sha256:<32 hex>`, the first 16 bytes of an
//! HMAC-SHA256 of the raw value under the configured key. Equal secrets give equal markers, so
//! the analyzer can still see that the token a login returned is the one later requests send,
//! without anyone being able to read it. What is structure rather than secret stays readable:
//! the `Bearer` scheme word, cookie names and `Set-Cookie` attributes, and a JWT's header and
//! claims (replay re-signs tokens and needs the claims; only the signature is a secret).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::config::{Config, JwtMode};

/// The key used when the configuration names none. Hashes made with it can be brute-forced for
/// guessable secrets, which is why the filter logs a warning when it is in use.
pub const BUILTIN_HASH_KEY: &[u8] = b"tapedeck built-in redaction key v1";

/// Replaces secrets in headers, query strings and JSON bodies.
#[derive(Debug, Clone)]
pub struct Redactor {
    key: Vec<u8>,
    headers: Vec<String>,
    json_fields: Vec<String>,
    query_params: Vec<String>,
    jwt: JwtMode,
}

/// What became of a body that had to be redacted.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyRedaction {
    /// Nothing in it needed redacting; keep it as is.
    Unchanged,
    /// These JSON paths were redacted; the body is the rewritten JSON.
    Redacted(Vec<u8>, Vec<String>),
    /// The body could not be parsed (truncated or not JSON), so it is withheld whole.
    Withheld,
}

impl Redactor {
    /// Builds the redactor a configuration asks for.
    pub fn new(config: &Config) -> Self {
        let lower = |names: &[String]| {
            names
                .iter()
                .map(|name| name.trim().to_ascii_lowercase())
                .collect()
        };
        Self {
            key: config
                .redaction
                .hash_key
                .as_ref()
                .map_or_else(|| BUILTIN_HASH_KEY.to_vec(), |key| key.as_bytes().to_vec()),
            headers: config.redacted_headers(),
            json_fields: lower(&config.redaction.json_fields),
            query_params: config
                .redaction
                .query_params
                .iter()
                .map(|name| name.trim().to_string())
                .collect(),
            jwt: config.redaction.jwt,
        }
    }

    /// The marker that stands for a secret.
    pub fn marker(&self, secret: &[u8]) -> String {
        tapedeck_proto::redaction_marker(&self.key, secret)
    }

    /// Whether a header's value is a secret.
    pub fn is_secret_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|secret| secret.eq_ignore_ascii_case(name))
    }

    /// Whether JSON bodies need parsing at all.
    pub fn redacts_json(&self) -> bool {
        !self.json_fields.is_empty()
    }

    /// The redacted form of a secret header's value.
    pub fn header_value(&self, name: &str, value: &[u8]) -> Vec<u8> {
        if name.eq_ignore_ascii_case("cookie") {
            self.cookie(value)
        } else if name.eq_ignore_ascii_case("set-cookie") {
            self.set_cookie(value)
        } else {
            self.credentials(value)
        }
    }

    /// A credential such as `Bearer <token>` keeps its scheme word; the rest is a token.
    fn credentials(&self, value: &[u8]) -> Vec<u8> {
        if let Some(space) = value.iter().position(|b| *b == b' ') {
            let (scheme, rest) = value.split_at(space);
            let token = trim(rest);
            if !scheme.is_empty() && scheme.iter().all(u8::is_ascii_alphabetic) && !token.is_empty()
            {
                let mut out = scheme.to_vec();
                out.push(b' ');
                out.extend_from_slice(self.token(token).as_bytes());
                return out;
            }
        }
        self.token(trim(value)).into_bytes()
    }

    /// `a=1; b=2` becomes `a=<marker>; b=<marker>`: names stay, values go.
    fn cookie(&self, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(value.len() + 64);
        for (i, pair) in value.split(|b| *b == b';').enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(&self.cookie_pair(trim(pair)));
        }
        out
    }

    /// `name=value; Path=/; HttpOnly` keeps the name and every attribute.
    fn set_cookie(&self, value: &[u8]) -> Vec<u8> {
        let end = value.iter().position(|b| *b == b';').unwrap_or(value.len());
        let (pair, attributes) = value.split_at(end);
        let mut out = self.cookie_pair(trim(pair));
        out.extend_from_slice(attributes);
        out
    }

    fn cookie_pair(&self, pair: &[u8]) -> Vec<u8> {
        match pair.iter().position(|b| *b == b'=') {
            Some(eq) => {
                let (name, rest) = pair.split_at(eq);
                let secret = rest.get(1..).unwrap_or_default();
                let mut out = name.to_vec();
                out.push(b'=');
                out.extend_from_slice(self.token(secret).as_bytes());
                out
            }
            None => self.token(pair).into_bytes(),
        }
    }

    /// A token: a JWT keeps its header and claims (unless configured otherwise); anything else
    /// becomes a marker.
    pub fn token(&self, token: &[u8]) -> String {
        if self.jwt == JwtMode::KeepClaims
            && let Some((header_and_claims, _signature)) = split_jwt(token)
        {
            let mut out = String::from_utf8_lossy(header_and_claims).into_owned();
            out.push('.');
            out.push_str(&self.marker(token));
            return out;
        }
        self.marker(token)
    }

    /// Redacts configured query parameters of a path. Returns the names redacted.
    pub fn path(&self, path: &str) -> (String, Vec<String>) {
        let Some((base, query)) = path.split_once('?') else {
            return (path.to_string(), Vec::new());
        };
        if self.query_params.is_empty() {
            return (path.to_string(), Vec::new());
        }
        let mut redacted = Vec::new();
        let mut out = String::with_capacity(path.len() + 64);
        out.push_str(base);
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, value)) if self.query_params.iter().any(|secret| secret == name) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(&self.token(value.as_bytes()));
                    if !redacted.iter().any(|seen| seen == name) {
                        redacted.push(name.to_string());
                    }
                }
                _ => out.push_str(pair),
            }
        }
        (out, redacted)
    }

    /// Redacts configured fields of a JSON body.
    pub fn json_body(&self, body: &[u8]) -> BodyRedaction {
        if body.is_empty() {
            return BodyRedaction::Unchanged;
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
            return BodyRedaction::Withheld;
        };
        let mut paths = Vec::new();
        self.walk(&mut value, &mut String::from("$"), &mut paths);
        if paths.is_empty() {
            return BodyRedaction::Unchanged;
        }
        match serde_json::to_vec(&value) {
            Ok(bytes) => BodyRedaction::Redacted(bytes, paths),
            Err(_) => BodyRedaction::Withheld,
        }
    }

    fn walk(&self, value: &mut Value, path: &mut String, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    let len = path.len();
                    path.push('.');
                    path.push_str(key);
                    if self
                        .json_fields
                        .iter()
                        .any(|field| field.eq_ignore_ascii_case(key))
                    {
                        let raw = match &*child {
                            Value::String(text) => text.as_bytes().to_vec(),
                            other => other.to_string().into_bytes(),
                        };
                        *child = Value::String(self.token(&raw));
                        if !found.contains(path) {
                            found.push(path.clone());
                        }
                    } else {
                        self.walk(child, path, found);
                    }
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                let len = path.len();
                path.push_str("[*]");
                for item in items {
                    self.walk(item, path, found);
                }
                path.truncate(len);
            }
            _ => {}
        }
    }
}

/// Splits a JWT (`header.claims.signature`, base64url, with a JSON header naming `alg`) into
/// `header.claims` and the signature. Anything else is `None`.
pub fn split_jwt(token: &[u8]) -> Option<(&[u8], &[u8])> {
    let last_dot = token.iter().rposition(|b| *b == b'.')?;
    let (head, signature) = token.split_at(last_dot);
    let first_dot = head.iter().position(|b| *b == b'.')?;
    let (header, claims) = head.split_at(first_dot);
    let claims = claims.get(1..)?;
    let b64url = |part: &[u8]| {
        !part.is_empty()
            && part
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    };
    if !b64url(header)
        || !b64url(claims)
        || !signature.get(1..).is_some_and(|s| {
            s.iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        })
    {
        return None;
    }
    let decoded = URL_SAFE_NO_PAD.decode(header).ok()?;
    let json: Value = serde_json::from_slice(&decoded).ok()?;
    json.get("alg")?;
    Some((head, signature.get(1..)?))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    // {"alg":"HS256","typ":"JWT"} . {"sub":"42","iat":1764000000} . signature
    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsImlhdCI6MTc2NDAwMDAwMH0.c2lnbmF0dXJlLWJ5dGVz";

    fn redactor(extra: &str) -> Redactor {
        let json = format!(
            r#"{{"version": 1, "collector": {{"cluster": "c"}}, "redaction": {{"hash_key": "k"{extra}}}}}"#
        );
        Redactor::new(&Config::parse(json.as_bytes()).unwrap())
    }

    fn is_marker(text: &str) -> bool {
        text.strip_prefix("tapedeck-redacted:hmac-sha256:")
            .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    #[test]
    fn markers_are_keyed_stable_and_distinct() {
        let a = redactor("");
        assert!(is_marker(&a.marker(b"s3cret")));
        assert_eq!(a.marker(b"s3cret"), a.marker(b"s3cret"));
        assert_ne!(a.marker(b"s3cret"), a.marker(b"s3cret2"));
        let other_key = Redactor::new(
            &Config::parse(br#"{"version": 1, "collector": {"cluster": "c"}, "redaction": {"hash_key": "other"}}"#).unwrap(),
        );
        assert_ne!(a.marker(b"s3cret"), other_key.marker(b"s3cret"));
    }

    #[test]
    fn bearer_jwt_keeps_scheme_header_and_claims() {
        let r = redactor("");
        let out =
            String::from_utf8(r.header_value("authorization", format!("Bearer {JWT}").as_bytes()))
                .unwrap();
        let (scheme, token) = out.split_once(' ').unwrap();
        assert_eq!(scheme, "Bearer");
        let (head, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(
            head,
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsImlhdCI6MTc2NDAwMDAwMH0"
        );
        assert!(is_marker(signature), "{signature}");
        assert!(!out.contains("c2lnbmF0dXJlLWJ5dGVz"));
    }

    #[test]
    fn jwt_hash_mode_hides_the_whole_token() {
        let r = redactor(r#", "jwt": "hash""#);
        let out =
            String::from_utf8(r.header_value("authorization", format!("Bearer {JWT}").as_bytes()))
                .unwrap();
        assert!(is_marker(out.strip_prefix("Bearer ").unwrap()), "{out}");
    }

    #[test]
    fn opaque_tokens_and_basic_auth_become_markers() {
        let r = redactor("");
        let out =
            String::from_utf8(r.header_value("authorization", b"Basic dXNlcjpwYXNz")).unwrap();
        assert!(is_marker(out.strip_prefix("Basic ").unwrap()));
        let out = String::from_utf8(r.header_value("x-api-key", b"abc.def")).unwrap();
        assert!(is_marker(&out), "{out}");
        // Non-UTF-8 secrets are hashed like any other bytes.
        let out = String::from_utf8(r.header_value("x-api-key", &[0xff, 0xfe])).unwrap();
        assert!(is_marker(&out));
    }

    #[test]
    fn cookies_keep_names_and_set_cookie_keeps_attributes() {
        let r = redactor("");
        let out = String::from_utf8(r.header_value("cookie", b"session=abc; theme=dark")).unwrap();
        let pairs: Vec<_> = out.split("; ").collect();
        assert_eq!(pairs.len(), 2);
        assert!(pairs[0].starts_with("session=") && is_marker(&pairs[0]["session=".len()..]));
        assert!(pairs[1].starts_with("theme=") && is_marker(&pairs[1]["theme=".len()..]));
        let out = String::from_utf8(r.header_value("set-cookie", b"session=abc; Path=/; HttpOnly"))
            .unwrap();
        assert!(out.starts_with("session=tapedeck-redacted:hmac-sha256:"));
        assert!(out.ends_with("; Path=/; HttpOnly"));
        assert!(!out.contains("abc"));
        // The same secret gives the same marker wherever it appears.
        assert_eq!(
            &pairs[0]["session=".len()..],
            &out["session=".len()..out.find(';').unwrap()]
        );
    }

    #[test]
    fn configured_json_fields_are_redacted_at_any_depth() {
        let r = redactor(r#", "json_fields": ["password", "Card"]"#);
        let body =
            br#"{"user":"ann","password":"hunter2","items":[{"card":{"n":1}},{"card":"4111"}]}"#;
        let BodyRedaction::Redacted(out, paths) = r.json_body(body) else {
            panic!("expected a redaction")
        };
        assert_eq!(paths, ["$.password", "$.items[*].card"]);
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["user"], "ann");
        assert!(is_marker(value["password"].as_str().unwrap()));
        assert!(is_marker(value["items"][0]["card"].as_str().unwrap()));
        assert!(is_marker(value["items"][1]["card"].as_str().unwrap()));
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("4111"));
        // Key order is kept.
        assert!(text.starts_with(r#"{"user":"ann","password":"#));
    }

    #[test]
    fn json_bodies_without_secrets_or_unparseable_are_handled() {
        let r = redactor(r#", "json_fields": ["password"]"#);
        assert_eq!(r.json_body(br#"{"user":"ann"}"#), BodyRedaction::Unchanged);
        assert_eq!(r.json_body(b""), BodyRedaction::Unchanged);
        assert_eq!(r.json_body(br#"{"password":"hun"#), BodyRedaction::Withheld);
    }

    #[test]
    fn query_params_are_redacted_by_name() {
        let r = redactor(r#", "query_params": ["token"]"#);
        let (path, names) = r.path("/a?x=1&token=abc&y=&token=def");
        assert_eq!(names, ["token"]);
        let parts: Vec<_> = path.split('&').collect();
        assert_eq!(parts[0], "/a?x=1");
        assert!(is_marker(parts[1].strip_prefix("token=").unwrap()));
        assert_eq!(parts[2], "y=");
        assert!(!path.contains("abc") && !path.contains("def"));
        assert_eq!(r.path("/plain"), ("/plain".to_string(), vec![]));
    }

    #[test]
    fn split_jwt_only_accepts_real_jwts() {
        assert!(split_jwt(JWT.as_bytes()).is_some());
        assert!(split_jwt(b"a.b.c").is_none());
        assert!(split_jwt(b"not a jwt").is_none());
        assert!(split_jwt(b"..").is_none());
        assert!(split_jwt(&[0xff, b'.', 0xfe, b'.', 0x00]).is_none());
    }
}

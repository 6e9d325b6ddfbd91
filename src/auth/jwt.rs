//! Cloudflare Access: the `Cf-Access-Jwt-Assertion` JWT (RS256). This module parses
//! the token, picks the key by `kid`, and checks the claims; the signature itself
//! is verified with WebCrypto in `edge::authenticate` (no RSA code of our own).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::AuthError;
use crate::core::permission::Identity;

#[derive(Debug, Clone, PartialEq)]
pub struct AccessSettings {
    /// The team domain, e.g. `https://team.cloudflareaccess.com`: the `iss` claim.
    pub issuer: String,
    /// The application's AUD tag: must be in the `aud` claim.
    pub audience: String,
    /// The claim listing the caller's groups.
    pub groups_claim: String,
    /// Where the team's signing keys are published.
    pub jwks_url: String,
    /// A token naming an unknown `kid` refetches the key set at most this often,
    /// so a stream of forged tokens cannot become a stream of fetches.
    pub key_refetch_interval_s: f64,
}

/// A parsed, not yet verified, JWT.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwt {
    pub kid: String,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: String,
    pub signature: Vec<u8>,
    claims: Map<String, Value>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

fn decode(part: &str, what: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| AuthError::rejected(format!("JWT {what} is not base64url: {e}")))
}

pub fn parse(token: &str) -> Result<Jwt, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::rejected("JWT must have three parts"));
    };
    let parsed: Header = serde_json::from_slice(&decode(header, "header")?)
        .map_err(|e| AuthError::rejected(format!("JWT header: {e}")))?;
    if parsed.alg != "RS256" {
        return Err(AuthError::rejected(format!(
            "JWT algorithm {} is not RS256",
            parsed.alg
        )));
    }
    let claims = match serde_json::from_slice(&decode(payload, "payload")?) {
        Ok(Value::Object(claims)) => claims,
        _ => return Err(AuthError::rejected("JWT payload is not a JSON object")),
    };
    Ok(Jwt {
        kid: parsed
            .kid
            .ok_or_else(|| AuthError::rejected("JWT has no kid"))?,
        signing_input: format!("{header}.{payload}"),
        signature: decode(signature, "signature")?,
        claims,
    })
}

impl Jwt {
    /// Checks issuer, audience and validity window; returns who it names.
    pub fn identity(&self, settings: &AccessSettings, now: f64) -> Result<Identity, AuthError> {
        if self.claims.get("iss").and_then(Value::as_str) != Some(settings.issuer.as_str()) {
            return Err(AuthError::rejected("JWT issuer is not the team domain"));
        }
        let audience_ok = match self.claims.get("aud") {
            Some(Value::String(single)) => *single == settings.audience,
            Some(Value::Array(many)) => many
                .iter()
                .any(|a| a.as_str() == Some(settings.audience.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err(AuthError::rejected(
                "JWT audience does not include this application",
            ));
        }
        match self.claims.get("exp").and_then(Value::as_f64) {
            Some(expiry) if expiry > now => {}
            Some(_) => return Err(AuthError::rejected("JWT has expired")),
            None => return Err(AuthError::rejected("JWT has no expiry")),
        }
        if self
            .claims
            .get("nbf")
            .and_then(Value::as_f64)
            .is_some_and(|not_before| not_before > now)
        {
            return Err(AuthError::rejected("JWT is not valid yet"));
        }
        // People have an email; service tokens a common name.
        let client_id = ["email", "common_name"]
            .iter()
            .find_map(|claim| {
                self.claims
                    .get(*claim)
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
            })
            .ok_or_else(|| AuthError::rejected("JWT names no email or common_name"))?;
        let groups = match self.claims.get(&settings.groups_claim) {
            Some(Value::Array(groups)) => groups
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Identity {
            client_id: client_id.to_owned(),
            groups,
        })
    }
}

/// One RSA signing key as published: modulus and exponent stay base64url, which
/// is what WebCrypto's JWK import takes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Jwk {
    pub kid: String,
    pub n: String,
    pub e: String,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<Value>,
}

/// The RSA keys of a JWKS document (others are skipped).
pub fn parse_jwks(body: &str) -> Result<Vec<Jwk>, AuthError> {
    let set: KeySet = serde_json::from_str(body)
        .map_err(|e| AuthError::unavailable(format!("JWKS is not a key set: {e}")))?;
    Ok(set
        .keys
        .into_iter()
        .filter(|key| key["kty"] == "RSA")
        .filter_map(|key| serde_json::from_value(key).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> AccessSettings {
        AccessSettings {
            issuer: "https://team.example".into(),
            audience: "aud-tag".into(),
            groups_claim: "groups".into(),
            jwks_url: "https://team.example/cdn-cgi/access/certs".into(),
            key_refetch_interval_s: 30.0,
        }
    }

    fn token(header: Value, claims: Value) -> String {
        let part = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        format!(
            "{}.{}.{}",
            part(&header),
            part(&claims),
            URL_SAFE_NO_PAD.encode(b"signature")
        )
    }

    fn good_claims() -> Value {
        json!({"iss": "https://team.example", "aud": ["aud-tag"], "exp": 2000.0, "nbf": 900,
               "email": "alice@example.org", "groups": ["g1", "g2"]})
    }

    fn identity(claims: Value) -> Result<Identity, AuthError> {
        parse(&token(json!({"alg": "RS256", "kid": "k1"}), claims))?.identity(&settings(), 1000.0)
    }

    #[test]
    fn a_good_token_names_its_email_and_groups() {
        let jwt = parse(&token(json!({"alg": "RS256", "kid": "k1"}), good_claims())).unwrap();
        assert_eq!(jwt.kid, "k1");
        assert_eq!(jwt.signature, b"signature");
        assert_eq!(jwt.signing_input.matches('.').count(), 1);
        let who = jwt.identity(&settings(), 1000.0).unwrap();
        assert_eq!(who.client_id, "alice@example.org");
        assert_eq!(who.groups, vec!["g1".to_owned(), "g2".to_owned()]);
    }

    #[test]
    fn service_tokens_are_named_by_common_name_and_a_single_audience_string_works() {
        let claims = json!({"iss": "https://team.example", "aud": "aud-tag", "exp": 2000, "common_name": "ci.access"});
        assert_eq!(identity(claims).unwrap().client_id, "ci.access");
    }

    #[test]
    fn expired_not_yet_valid_foreign_and_misissued_tokens_are_rejected() {
        let mut cases = Vec::new();
        for (claim, value) in [
            ("exp", json!(999)),
            ("nbf", json!(1001)),
            ("aud", json!(["other"])),
            ("aud", json!("other")),
            ("iss", json!("https://evil.example")),
        ] {
            let mut claims = good_claims();
            claims[claim] = value;
            cases.push(claims);
        }
        let mut no_expiry = good_claims();
        no_expiry.as_object_mut().unwrap().remove("exp");
        cases.push(no_expiry);
        let mut nobody = good_claims();
        nobody.as_object_mut().unwrap().remove("email");
        cases.push(nobody);
        for claims in cases {
            assert!(
                matches!(identity(claims.clone()), Err(AuthError::Rejected { .. })),
                "{claims}"
            );
        }
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let claims = good_claims();
        for bad in [
            "".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            "!!.??.**".to_owned(),
            token(json!({"alg": "HS256", "kid": "k1"}), claims.clone()),
            token(json!({"alg": "RS256"}), claims.clone()),
            token(json!({"alg": "RS256", "kid": "k1"}), json!([1, 2])),
        ] {
            assert!(
                matches!(parse(&bad), Err(AuthError::Rejected { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn jwks_documents_yield_their_rsa_keys() {
        let body = r#"{"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB", "alg": "RS256"},
                                {"kty": "EC", "kid": "k2", "x": "a", "y": "b"}]}"#;
        let keys = parse_jwks(body).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, "k1");
        assert!(matches!(
            parse_jwks("nope"),
            Err(AuthError::Unavailable { .. })
        ));
    }
}

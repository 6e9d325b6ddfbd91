//! Who is calling: the authentication methods and their pure parts — settings,
//! header parsing, static tokens, Globus response rules, JWT claim checks, and the
//! identity cache. The I/O (calling Globus, fetching JWKS, verifying signatures
//! with WebCrypto) lives in `edge::authenticate`; this module decides.
//!
//! Pure: no `worker` types, no clock (takes `now`), no I/O.

pub mod cache;
pub mod globus;
pub mod jwt;
pub mod tokens;

use crate::protocol::config::seconds;
use crate::protocol::error::ExchangeError;

/// Why a caller could not be identified.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthError {
    /// No usable credentials in the request (401).
    MissingCredentials,
    /// Credentials present but refused: unknown, inactive, expired, wrong
    /// audience or issuer, bad signature (403).
    Rejected { reason: String },
    /// The identity provider could not be asked (outage, timeout): retry (503).
    Unavailable { reason: String },
}

impl AuthError {
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self::Rejected {
            reason: reason.into(),
        }
    }

    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
        }
    }
}

impl From<AuthError> for ExchangeError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::MissingCredentials => ExchangeError::Unauthorized,
            AuthError::Rejected { reason } => ExchangeError::TokenRejected { reason },
            AuthError::Unavailable { reason } => ExchangeError::AuthUnavailable { reason },
        }
    }
}

/// Reads the token from `Authorization: Bearer <token>`.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let header = header.ok_or(AuthError::MissingCredentials)?;
    match header.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer")
                && !token.is_empty()
                && !token.contains(' ') =>
        {
            Ok(token)
        }
        _ => Err(AuthError::MissingCredentials),
    }
}

/// The configured authentication method and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthMethod {
    /// Every caller is the same anonymous client (as upstream without auth).
    None,
    Globus(globus::GlobusSettings),
    Tokens(tokens::TokenTable),
    Access(jwt::AccessSettings),
}

/// Settings every identity-provider method shares.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    pub method: AuthMethod,
    /// How long a successful look-up is reused.
    pub cache_ttl_s: f64,
    /// Longest wait for the identity provider before answering 503.
    pub timeout_s: f64,
}

impl AuthSettings {
    /// Reads the settings through `var` (vars and secrets alike).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let positive = |name: &str, default: f64| seconds(&var, name, default);
        let required = |name: &str| -> Result<String, String> {
            var(name)
                .filter(|value| !value.trim().is_empty())
                .ok_or_else(|| {
                    format!(
                        "{name} must be set when AUTH_METHOD is {:?}",
                        var("AUTH_METHOD").unwrap_or_default()
                    )
                })
        };
        let method = match var("AUTH_METHOD").as_deref().map(str::trim) {
            // No default: a deployment that forgot to choose must not serve an open
            // exchange (anyone could list, read and terminate every agent).
            None | Some("") => return Err(UNSET_METHOD.to_owned()),
            Some("none") => AuthMethod::None,
            Some("globus") => {
                let client_id = required("GLOBUS_CLIENT_ID")?;
                AuthMethod::Globus(globus::GlobusSettings {
                    resource_server: var("GLOBUS_RESOURCE_SERVER")
                        .unwrap_or_else(|| client_id.clone()),
                    client_secret: required("GLOBUS_CLIENT_SECRET")?,
                    client_id,
                    auth_url: base_url(var("GLOBUS_AUTH_URL"), "https://auth.globus.org"),
                    groups_url: base_url(var("GLOBUS_GROUPS_URL"), "https://groups.api.globus.org"),
                })
            }
            Some("token") => {
                AuthMethod::Tokens(tokens::TokenTable::parse(&required("EXCHANGE_TOKENS")?)?)
            }
            Some("access") => {
                let team_domain = base_url(Some(required("ACCESS_TEAM_DOMAIN")?), "");
                AuthMethod::Access(jwt::AccessSettings {
                    jwks_url: var("ACCESS_JWKS_URL")
                        .unwrap_or_else(|| format!("{team_domain}/cdn-cgi/access/certs")),
                    issuer: team_domain,
                    audience: required("ACCESS_AUD")?,
                    groups_claim: var("ACCESS_GROUPS_CLAIM").unwrap_or_else(|| "groups".to_owned()),
                    key_refetch_interval_s: positive("ACCESS_KEY_REFETCH_S", 30.0)?,
                })
            }
            Some(other) => {
                return Err(format!(
                    "AUTH_METHOD must be one of none, globus, token, access; got {other:?}"
                ))
            }
        };
        Ok(Self {
            method,
            cache_ttl_s: positive("AUTH_CACHE_TTL_S", 60.0)?,
            timeout_s: positive("AUTH_TIMEOUT_S", 10.0)?,
        })
    }
}

/// Why an exchange with no `AUTH_METHOD` answers nothing but this error.
const UNSET_METHOD: &str = "AUTH_METHOD must be set to one of none, globus, token, access \
     (none serves an open exchange: anyone who reaches the URL can list, read and \
     terminate every agent); see the README's Deploy section";

/// A base URL without its trailing slash, so paths can be appended.
fn base_url(value: Option<String>, default: &str) -> String {
    value
        .unwrap_or_else(|| default.to_owned())
        .trim()
        .trim_end_matches('/')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<AuthSettings, String> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AuthSettings::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn bearer_tokens_are_read_and_anything_else_is_missing_credentials() {
        assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some("bearer abc")), Ok("abc"));
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic abc"),
            Some("Bearer a b"),
        ] {
            assert_eq!(
                bearer_token(bad),
                Err(AuthError::MissingCredentials),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn none_chosen_on_purpose_means_anonymous_callers() {
        assert_eq!(
            settings(&[("AUTH_METHOD", "none")]).unwrap().method,
            AuthMethod::None
        );
    }

    #[test]
    fn an_unset_or_blank_method_is_a_configuration_error_not_an_open_exchange() {
        for pairs in [
            &[][..],
            &[("AUTH_METHOD", "")][..],
            &[("AUTH_METHOD", "  ")][..],
        ] {
            let error = settings(pairs).unwrap_err();
            assert!(error.starts_with("AUTH_METHOD must be set"), "{error}");
        }
    }

    #[test]
    fn globus_needs_client_credentials_and_defaults_the_rest() {
        let error = settings(&[("AUTH_METHOD", "globus")]).unwrap_err();
        assert!(error.contains("GLOBUS_CLIENT_ID"), "{error}");
        let parsed = settings(&[
            ("AUTH_METHOD", "globus"),
            ("GLOBUS_CLIENT_ID", "exchange"),
            ("GLOBUS_CLIENT_SECRET", "s3cret"),
            ("GLOBUS_AUTH_URL", "http://127.0.0.1:9/"),
        ])
        .unwrap();
        let AuthMethod::Globus(globus) = parsed.method else {
            panic!("not globus")
        };
        assert_eq!(globus.resource_server, "exchange");
        assert_eq!(globus.auth_url, "http://127.0.0.1:9");
        assert_eq!(globus.groups_url, "https://groups.api.globus.org");
        assert_eq!(parsed.cache_ttl_s, 60.0);
    }

    #[test]
    fn access_derives_the_jwks_url_from_the_team_domain() {
        let parsed = settings(&[
            ("AUTH_METHOD", "access"),
            ("ACCESS_TEAM_DOMAIN", "https://team.cloudflareaccess.com/"),
            ("ACCESS_AUD", "tag"),
        ])
        .unwrap();
        let AuthMethod::Access(access) = parsed.method else {
            panic!("not access")
        };
        assert_eq!(access.issuer, "https://team.cloudflareaccess.com");
        assert_eq!(
            access.jwks_url,
            "https://team.cloudflareaccess.com/cdn-cgi/access/certs"
        );
        assert_eq!(access.groups_claim, "groups");
        assert_eq!(access.key_refetch_interval_s, 30.0);
    }

    #[test]
    fn unknown_methods_and_bad_numbers_are_configuration_errors() {
        assert!(settings(&[("AUTH_METHOD", "magic")])
            .unwrap_err()
            .contains("AUTH_METHOD"));
        assert!(
            settings(&[("AUTH_METHOD", "none"), ("AUTH_CACHE_TTL_S", "-1")])
                .unwrap_err()
                .contains("AUTH_CACHE_TTL_S")
        );
        assert!(settings(&[("AUTH_METHOD", "token")])
            .unwrap_err()
            .contains("EXCHANGE_TOKENS"));
    }

    #[test]
    fn auth_errors_map_to_401_403_and_503() {
        assert_eq!(
            ExchangeError::from(AuthError::MissingCredentials).status(),
            401
        );
        assert_eq!(ExchangeError::from(AuthError::rejected("x")).status(), 403);
        let unavailable = ExchangeError::from(AuthError::unavailable("down"));
        assert_eq!(unavailable.status(), 503);
        assert!(unavailable.retry_after_s().is_some());
    }

    #[test]
    fn a_refused_credential_never_reaches_the_request_log() {
        use crate::protocol::request_log::{Outcome, RequestLog};
        const SECRET: &str = "tok-very-secret-0123456789";
        let table =
            tokens::TokenTable::parse(&format!(r#"{{"{SECRET}": {{"client_id": "a"}}}}"#)).unwrap();
        let refusals = [
            table.identify(&format!("{SECRET}-but-wrong")).unwrap_err(),
            bearer_token(Some(&format!("Basic {SECRET}"))).unwrap_err(),
            bearer_token(Some(&format!("Bearer {SECRET} extra"))).unwrap_err(),
            jwt::parse(&format!("{SECRET}.{SECRET}.{SECRET}")).unwrap_err(),
        ];
        for refusal in refusals {
            let error = ExchangeError::from(refusal);
            let line = RequestLog::new("GET")
                .record(Outcome {
                    status: error.status(),
                    error: Some(&error),
                    duration_ms: 1,
                    object_calls: 0,
                    rows_written: 0,
                })
                .to_line();
            assert!(line.contains(error.kind()), "{line}");
            assert!(!line.contains(SECRET), "{line}");
        }
    }
}

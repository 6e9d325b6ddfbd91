//! Authentication I/O: asks Globus who a token belongs to, fetches Cloudflare
//! Access signing keys and verifies JWT signatures with WebCrypto. The decisions
//! are in [`crate::auth`]; this file only fetches, times out and caches.
//!
//! Caches live in the isolate's memory: they are lost on eviction, which only
//! costs a new look-up.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use futures::future::{select, Either};
use worker::js_sys::{self, Array, Object, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{web_sys, Delay, Fetch, Headers, Method, Request, RequestInit};

use super::now_s;
use crate::auth::cache::IdentityCache;
use crate::auth::globus::{self, GlobusSettings, DEPENDENT_TOKEN_GRANT, GROUPS_SCOPE};
use crate::auth::jwt::{self, AccessSettings, Jwk};
use crate::auth::tokens::TokenTable;
use crate::auth::{bearer_token, AuthError, AuthMethod, AuthSettings};
use crate::core::permission::Identity;

thread_local! {
    static IDENTITIES: RefCell<IdentityCache> = RefCell::default();
    static SIGNING_KEYS: RefCell<SigningKeys> = RefCell::default();
}

/// Cloudflare Access keys by `kid`, and when they were last fetched.
#[derive(Default)]
struct SigningKeys {
    by_kid: HashMap<String, Jwk>,
    fetched_at: Option<f64>,
}

/// The caller's identity, from the configured method.
pub async fn authenticate(
    headers: &web_sys::Headers,
    settings: &AuthSettings,
) -> Result<Identity, AuthError> {
    let header = |name: &str| headers.get(name).ok().flatten();
    match &settings.method {
        AuthMethod::None => Ok(Identity::anonymous()),
        AuthMethod::Tokens(table) => identify_token(table, header("authorization").as_deref()),
        AuthMethod::Globus(globus) => {
            let authorization = header("authorization");
            let token = bearer_token(authorization.as_deref())?;
            let key = format!("globus:{token}");
            let now = now_s();
            if let Some(identity) = IDENTITIES.with(|cache| cache.borrow().get(&key, now)) {
                return Ok(identity);
            }
            let identity = ask_globus(globus, token, settings.timeout_s).await?;
            IDENTITIES.with(|cache| {
                cache
                    .borrow_mut()
                    .put(&key, identity.clone(), now, settings.cache_ttl_s)
            });
            Ok(identity)
        }
        AuthMethod::Access(access) => {
            let assertion =
                header("cf-access-jwt-assertion").ok_or(AuthError::MissingCredentials)?;
            verify_access_jwt(access, &assertion, settings.timeout_s).await
        }
    }
}

fn identify_token(table: &TokenTable, authorization: Option<&str>) -> Result<Identity, AuthError> {
    table.identify(bearer_token(authorization)?)
}

/// Introspection, then groups via a dependent token (as upstream).
async fn ask_globus(
    settings: &GlobusSettings,
    token: &str,
    timeout_s: f64,
) -> Result<Identity, AuthError> {
    let client = basic_auth(&settings.client_id, &settings.client_secret);
    let introspection = post_form(
        &settings.introspect_url(),
        &client,
        &[("token", token)],
        timeout_s,
    )
    .await?;
    let client_id =
        globus::client_id_from_introspection(&introspection, &settings.resource_server)?;
    let dependent = post_form(
        &settings.token_url(),
        &client,
        &[
            ("grant_type", DEPENDENT_TOKEN_GRANT),
            ("token", token),
            ("scope", GROUPS_SCOPE),
        ],
        timeout_s,
    )
    .await?;
    let groups = match globus::groups_token(&dependent)? {
        Some(groups_token) => {
            let body = send(
                &settings.my_groups_url(),
                Method::Get,
                &[("authorization", format!("Bearer {groups_token}"))],
                None,
                timeout_s,
            )
            .await?;
            globus::active_groups(&body)?
        }
        None => Vec::new(),
    };
    Ok(Identity { client_id, groups })
}

/// Parses the JWT, finds its key (refetching the key set for an unknown `kid`),
/// checks the signature, then the claims.
async fn verify_access_jwt(
    settings: &AccessSettings,
    assertion: &str,
    timeout_s: f64,
) -> Result<Identity, AuthError> {
    let token = jwt::parse(assertion)?;
    let known = SIGNING_KEYS.with(|keys| keys.borrow().by_kid.get(&token.kid).cloned());
    let key = match known {
        Some(key) => key,
        None => {
            let now = now_s();
            let recently = SIGNING_KEYS.with(|keys| {
                keys.borrow()
                    .fetched_at
                    .is_some_and(|at| now - at < settings.key_refetch_interval_s)
            });
            if !recently {
                let body = send(&settings.jwks_url, Method::Get, &[], None, timeout_s).await?;
                let fetched = jwt::parse_jwks(&body)?;
                SIGNING_KEYS.with(|keys| {
                    let mut keys = keys.borrow_mut();
                    keys.by_kid = fetched
                        .into_iter()
                        .map(|key| (key.kid.clone(), key))
                        .collect();
                    keys.fetched_at = Some(now);
                });
            }
            SIGNING_KEYS
                .with(|keys| keys.borrow().by_kid.get(&token.kid).cloned())
                .ok_or_else(|| {
                    AuthError::rejected(format!("JWT key {:?} is not published", token.kid))
                })?
        }
    };
    if !verify_rs256(&key, token.signing_input.as_bytes(), &token.signature).await? {
        return Err(AuthError::rejected("JWT signature does not verify"));
    }
    token.identity(settings, now_s())
}

/// RSASSA-PKCS1-v1_5 with SHA-256, by the runtime's WebCrypto.
async fn verify_rs256(key: &Jwk, data: &[u8], signature: &[u8]) -> Result<bool, AuthError> {
    let failed = |what: &str| {
        let what = what.to_owned();
        move |error: JsValue| AuthError::rejected(format!("{what}: {error:?}"))
    };
    let subtle = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))
        .map_err(failed("crypto"))?
        .unchecked_into::<worker::web_sys::Crypto>()
        .subtle();
    let jwk = object(&[
        ("kty", "RSA".into()),
        ("n", key.n.as_str().into()),
        ("e", key.e.as_str().into()),
        ("alg", "RS256".into()),
        ("ext", true.into()),
    ])?;
    let algorithm = object(&[
        ("name", "RSASSA-PKCS1-v1_5".into()),
        ("hash", object(&[("name", "SHA-256".into())])?.into()),
    ])?;
    let usages = Array::of1(&JsValue::from_str("verify"));
    let imported = subtle
        .import_key_with_object("jwk", &jwk, &algorithm, false, &usages)
        .map_err(failed("import key"))?;
    let crypto_key: worker::web_sys::CryptoKey = JsFuture::from(imported)
        .await
        .map_err(failed("import key"))?
        .unchecked_into();
    let verified = subtle
        .verify_with_object_and_u8_array_and_u8_array(&algorithm, &crypto_key, signature, data)
        .map_err(failed("verify"))?;
    Ok(JsFuture::from(verified)
        .await
        .map_err(failed("verify"))?
        .as_bool()
        == Some(true))
}

fn object(fields: &[(&str, JsValue)]) -> Result<Object, AuthError> {
    let object = Object::new();
    for (name, value) in fields {
        Reflect::set(&object, &JsValue::from_str(name), value)
            .map_err(|error| AuthError::rejected(format!("building {name}: {error:?}")))?;
    }
    Ok(object)
}

fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

async fn post_form(
    url: &str,
    authorization: &str,
    fields: &[(&str, &str)],
    timeout_s: f64,
) -> Result<String, AuthError> {
    let body: Vec<String> = fields
        .iter()
        .map(|(name, value)| {
            format!(
                "{name}={}",
                String::from(js_sys::encode_uri_component(value))
            )
        })
        .collect();
    send(
        url,
        Method::Post,
        &[
            ("authorization", authorization.to_owned()),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
        ],
        Some(body.join("&")),
        timeout_s,
    )
    .await
}

/// One call to an identity provider. No answer within `timeout_s`, a network
/// failure or a 5xx is an outage (503 to our client); a 4xx means the provider
/// refused our request, which is a deployment fault but also not the caller's,
/// so it is reported the same way and logged.
async fn send(
    url: &str,
    method: Method,
    headers: &[(&str, String)],
    body: Option<String>,
    timeout_s: f64,
) -> Result<String, AuthError> {
    let outage = |reason: String| {
        worker::console_error!("identity provider {url}: {reason}");
        AuthError::unavailable(reason)
    };
    let header_map = Headers::new();
    for (name, value) in headers {
        header_map
            .set(name, value)
            .map_err(|e| outage(e.to_string()))?;
    }
    let mut init = RequestInit::new();
    init.with_method(method)
        .with_headers(header_map)
        .with_body(body.map(JsValue::from));
    let request = Request::new_with_init(url, &init).map_err(|e| outage(e.to_string()))?;
    let call = Box::pin(async move {
        let mut response = Fetch::Request(request).send().await?;
        let status = response.status_code();
        let text = response.text().await?;
        Ok::<_, worker::Error>((status, text))
    });
    let timer = Delay::from(Duration::from_secs_f64(timeout_s));
    match select(call, timer).await {
        Either::Right(_) => Err(outage(format!("no answer within {timeout_s} s"))),
        Either::Left((Err(error), _)) => Err(outage(error.to_string())),
        Either::Left((Ok((status, text)), _)) if (200..300).contains(&status) => Ok(text),
        Either::Left((Ok((status, _)), _)) => Err(outage(format!("answered HTTP {status}"))),
    }
}

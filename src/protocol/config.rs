//! Exchange settings, read from the Worker's `[vars]`. Parsed on every request (it is
//! a handful of string reads) so a bad deployment fails loudly and by name instead of
//! silently running with defaults.

/// Validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Longest a receive or listen may wait, and the default when none is given.
    pub listen_timeout_s: f64,
    /// Largest accepted message text, in bytes.
    pub message_size_limit: u64,
    /// A queue nobody reads this long is dropped (`core::expiry`).
    pub message_expiry_s: u64,
    /// A mailbox nobody uses this long is removed (`core::expiry`).
    pub gravestone_expiry_s: u64,
    /// Longest gap between bytes on an idle listen stream. Edges cut idle
    /// connections after ~100 s; 15 s keeps every proxy we know of happy.
    pub sse_keepalive_s: f64,
    /// How long a message confirmed on a listen stream is kept, so a client that
    /// reconnects with `Last-Event-Id` gets again what the broken stream lost.
    pub replay_window_s: f64,
    /// Report object calls and SQLite rows written per request in response headers
    /// (`x-exchange-object-calls`, `x-exchange-rows-written`): for benchmarks.
    pub cost_headers: bool,
    /// Where mailbox and directory objects are created (`DATA_JURISDICTION`,
    /// `DATA_LOCATION_HINT`).
    pub data_location: DataLocation,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_timeout_s: 60.0,
            message_size_limit: 512 * 1024,
            message_expiry_s: 7 * 24 * 3600,
            gravestone_expiry_s: 365 * 24 * 3600,
            sse_keepalive_s: 15.0,
            replay_window_s: 60.0,
            cost_headers: false,
            data_location: DataLocation::default(),
        }
    }
}

impl Config {
    /// Reads settings through `var` (the Worker's `env.var`); absent means default.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let defaults = Self::default();
        Ok(Self {
            listen_timeout_s: seconds(&var, "LISTEN_TIMEOUT_S", defaults.listen_timeout_s)?,
            message_size_limit: whole(
                &var,
                "MESSAGE_SIZE_LIMIT_KB",
                defaults.message_size_limit / 1024,
            )?
            .checked_mul(1024)
            .ok_or("MESSAGE_SIZE_LIMIT_KB is too large")?,
            message_expiry_s: whole(&var, "MESSAGE_EXPIRY_S", defaults.message_expiry_s)?,
            gravestone_expiry_s: whole(&var, "GRAVESTONE_EXPIRY_S", defaults.gravestone_expiry_s)?,
            sse_keepalive_s: seconds(&var, "SSE_KEEPALIVE_S", defaults.sse_keepalive_s)?,
            replay_window_s: seconds(&var, "REPLAY_WINDOW_S", defaults.replay_window_s)?,
            cost_headers: flag(&var, "EXCHANGE_COST_HEADERS")?,
            data_location: DataLocation {
                jurisdiction: one_of(
                    &var,
                    "DATA_JURISDICTION",
                    Jurisdiction::ALL,
                    Jurisdiction::as_str,
                )?,
                location_hint: one_of(
                    &var,
                    "DATA_LOCATION_HINT",
                    LocationHint::ALL,
                    LocationHint::as_str,
                )?,
            },
        })
    }

    /// The largest request body that could carry a valid message: the message text
    /// is embedded as a JSON string, and escaping can grow it up to six times
    /// (`\u00XX` for each byte), plus room for the other fields.
    pub fn body_size_limit(&self) -> u64 {
        self.message_size_limit
            .saturating_mul(6)
            .saturating_add(64 * 1024)
    }
}

/// Where this deployment's Durable Objects are created. Unset, Cloudflare places each
/// object near the request that first reaches it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataLocation {
    /// Objects are created, run and store their data only inside it. It is part of
    /// every object's id: the same mailbox uid names a different object in another
    /// jurisdiction (or in none).
    pub jurisdiction: Option<Jurisdiction>,
    /// Where a new object is preferably created; best effort, and ignored for
    /// objects that exist already.
    pub location_hint: Option<LocationHint>,
}

/// The jurisdictions Durable Objects can be restricted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jurisdiction {
    /// The European Union.
    Eu,
    /// FedRAMP-compliant data centers.
    Fedramp,
    /// FedRAMP High-compliant data centers.
    FedrampHigh,
    /// The United States.
    Us,
}

impl Jurisdiction {
    const ALL: &'static [Self] = &[Self::Eu, Self::Fedramp, Self::FedrampHigh, Self::Us];

    /// The name the runtime takes (`DurableObjectNamespace.jurisdiction(name)`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eu => "eu",
            Self::Fedramp => "fedramp",
            Self::FedrampHigh => "fedramp-high",
            Self::Us => "us",
        }
    }
}

/// The regions a new Durable Object can be hinted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationHint {
    WesternNorthAmerica,
    EasternNorthAmerica,
    SouthAmerica,
    WesternEurope,
    EasternEurope,
    AsiaPacific,
    Oceania,
    Africa,
    MiddleEast,
}

impl LocationHint {
    const ALL: &'static [Self] = &[
        Self::WesternNorthAmerica,
        Self::EasternNorthAmerica,
        Self::SouthAmerica,
        Self::WesternEurope,
        Self::EasternEurope,
        Self::AsiaPacific,
        Self::Oceania,
        Self::Africa,
        Self::MiddleEast,
    ];

    /// The name the runtime takes (`getByName(name, { locationHint })`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WesternNorthAmerica => "wnam",
            Self::EasternNorthAmerica => "enam",
            Self::SouthAmerica => "sam",
            Self::WesternEurope => "weur",
            Self::EasternEurope => "eeur",
            Self::AsiaPacific => "apac",
            Self::Oceania => "oc",
            Self::Africa => "afr",
            Self::MiddleEast => "me",
        }
    }
}

/// A setting that names one of `options` (by `as_str`), or `None` when absent or empty.
fn one_of<T: Copy>(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    options: &[T],
    as_str: fn(T) -> &'static str,
) -> Result<Option<T>, String> {
    let Some(text) = var(name) else {
        return Ok(None);
    };
    let value = text.trim();
    if value.is_empty() {
        return Ok(None);
    }
    options
        .iter()
        .copied()
        .find(|option| as_str(*option) == value)
        .map(Some)
        .ok_or_else(|| {
            let allowed: Vec<&str> = options.iter().map(|option| as_str(*option)).collect();
            format!(
                "{name} must be one of {} (or unset), got {text:?}",
                allowed.join(", ")
            )
        })
}

/// The longest a seconds setting may be: these settings become timers, and the
/// runtime's timers wrap past 2^31 ms (about 24.8 days); converting a far larger
/// value to a `Duration` would even panic, which resets every object in the isolate.
pub const MAX_SECONDS: f64 = 24.0 * 24.0 * 3600.0;

/// A positive number of seconds from `var`, at most [`MAX_SECONDS`], or `default`
/// when absent.
pub(crate) fn seconds(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: f64,
) -> Result<f64, String> {
    let Some(text) = var(name) else {
        return Ok(default);
    };
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 && value <= MAX_SECONDS => Ok(value),
        _ => Err(format!(
            "{name} must be a number of seconds greater than 0 and at most {MAX_SECONDS} \
             (24 days), got {text:?}"
        )),
    }
}

fn flag(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<bool, String> {
    match var(name).as_deref().map(str::trim) {
        None | Some("" | "0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(format!("{name} must be 1, 0, true or false, got {other:?}")),
    }
}

fn whole(var: &impl Fn(&str) -> Option<String>, name: &str, default: u64) -> Result<u64, String> {
    let Some(text) = var(name) else {
        return Ok(default);
    };
    match text.trim().parse::<u64>() {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(format!(
            "{name} must be a whole number greater than 0, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn absent_settings_take_upstream_defaults() {
        let config = from(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.listen_timeout_s, 60.0);
        assert_eq!(config.message_size_limit, 512 * 1024);
    }

    #[test]
    fn settings_are_read_and_converted() {
        let config = from(&[
            ("LISTEN_TIMEOUT_S", "2.5"),
            ("MESSAGE_SIZE_LIMIT_KB", "1"),
            ("EXCHANGE_COST_HEADERS", "1"),
            ("REPLAY_WINDOW_S", "2073600"),
        ])
        .unwrap();
        assert_eq!(config.replay_window_s, MAX_SECONDS);
        assert!(config.cost_headers);
        assert_eq!(config.listen_timeout_s, 2.5);
        assert_eq!(config.message_size_limit, 1024);
    }

    #[test]
    fn invalid_settings_fail_naming_the_variable() {
        for (name, value) in [
            ("LISTEN_TIMEOUT_S", "soon"),
            ("LISTEN_TIMEOUT_S", "0"),
            ("LISTEN_TIMEOUT_S", "-1"),
            ("MESSAGE_SIZE_LIMIT_KB", "1.5"),
            ("MESSAGE_EXPIRY_S", ""),
            ("SSE_KEEPALIVE_S", "inf"),
            ("REPLAY_WINDOW_S", "-5"),
            ("LISTEN_TIMEOUT_S", "1e300"),
            ("SSE_KEEPALIVE_S", "2073601"),
            ("EXCHANGE_COST_HEADERS", "yes"),
            ("DATA_JURISDICTION", "EU"),
            ("DATA_LOCATION_HINT", "mars"),
        ] {
            let error = from(&[(name, value)]).unwrap_err();
            assert!(error.contains(name), "{error}");
        }
    }

    #[test]
    fn objects_have_no_placement_unless_one_is_set() {
        assert_eq!(from(&[]).unwrap().data_location, DataLocation::default());
        let blank = from(&[("DATA_JURISDICTION", " "), ("DATA_LOCATION_HINT", "")]).unwrap();
        assert_eq!(blank.data_location, DataLocation::default());
    }

    #[test]
    fn every_jurisdiction_and_location_hint_is_read_by_its_runtime_name() {
        for jurisdiction in Jurisdiction::ALL {
            let config = from(&[("DATA_JURISDICTION", jurisdiction.as_str())]).unwrap();
            assert_eq!(config.data_location.jurisdiction, Some(*jurisdiction));
        }
        for hint in LocationHint::ALL {
            let config = from(&[("DATA_LOCATION_HINT", &format!(" {} ", hint.as_str()))]).unwrap();
            assert_eq!(config.data_location.location_hint, Some(*hint));
        }
        let both = from(&[("DATA_JURISDICTION", "eu"), ("DATA_LOCATION_HINT", "weur")]).unwrap();
        assert_eq!(
            both.data_location,
            DataLocation {
                jurisdiction: Some(Jurisdiction::Eu),
                location_hint: Some(LocationHint::WesternEurope),
            }
        );
    }

    #[test]
    fn a_bad_placement_names_the_variable_and_the_allowed_values() {
        let error = from(&[("DATA_JURISDICTION", "europe")]).unwrap_err();
        assert_eq!(
            error,
            "DATA_JURISDICTION must be one of eu, fedramp, fedramp-high, us (or unset), \
             got \"europe\""
        );
        let error = from(&[("DATA_LOCATION_HINT", "us-east")]).unwrap_err();
        assert_eq!(
            error,
            "DATA_LOCATION_HINT must be one of wnam, enam, sam, weur, eeur, apac, oc, afr, me \
             (or unset), got \"us-east\""
        );
    }
}

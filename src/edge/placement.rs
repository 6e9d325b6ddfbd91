//! Where the Worker's objects live: the namespace it opens per binding, restricted
//! to the configured jurisdiction, and the stubs it gets from it, with the
//! configured location hint (`DATA_JURISDICTION`, `DATA_LOCATION_HINT`).
//!
//! Every stub the Worker gets goes through here, so one request never reaches the
//! same name in two places.

use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{js_sys, Env, ObjectNamespace, Stub};

use super::internal;
use crate::protocol::config::{DataLocation, Jurisdiction, LocationHint};
use crate::protocol::error::ExchangeError;

/// A Durable Object namespace as this deployment places its objects.
pub(super) struct PlacedNamespace {
    namespace: ObjectNamespace,
    location_hint: Option<LocationHint>,
}

impl PlacedNamespace {
    /// The namespace of `binding`, restricted to `location`'s jurisdiction if set.
    pub(super) fn open(
        env: &Env,
        binding: &str,
        location: DataLocation,
    ) -> Result<Self, ExchangeError> {
        let namespace = env.durable_object(binding).map_err(internal(binding))?;
        let namespace = match location.jurisdiction {
            None => namespace,
            Some(jurisdiction) => restrict(&namespace, jurisdiction)?,
        };
        Ok(Self {
            namespace,
            location_hint: location.location_hint,
        })
    }

    /// The stub of the object `name`. The hint only matters the first time an
    /// object is reached; it never changes which object a name is.
    pub(super) fn stub(&self, name: &str) -> Result<Stub, ExchangeError> {
        match self.location_hint {
            None => self.namespace.get_by_name(name),
            Some(hint) => self
                .namespace
                .get_by_name_with_location_hint(name, hint.as_str()),
        }
        .map_err(internal("object stub"))
    }
}

/// `namespace.jurisdiction(name)`, which the `worker` crate does not wrap. A runtime
/// that refuses it (local workerd refuses every jurisdiction) makes this a
/// configuration error: the deployment asked for a guarantee it cannot have.
fn restrict(
    namespace: &ObjectNamespace,
    jurisdiction: Jurisdiction,
) -> Result<ObjectNamespace, ExchangeError> {
    let refused = |error: JsValue| ExchangeError::Configuration {
        reason: format!(
            "DATA_JURISDICTION {:?} was refused by the runtime: {}",
            jurisdiction.as_str(),
            error
                .dyn_ref::<js_sys::Error>()
                .map(|error| String::from(error.message()))
                .unwrap_or_else(|| format!("{error:?}"))
        ),
    };
    let unrestricted: &JsValue = namespace.as_ref();
    let method: js_sys::Function = js_sys::Reflect::get(unrestricted, &"jurisdiction".into())
        .map_err(refused)?
        .dyn_into()
        .map_err(refused)?;
    let restricted = method
        .call1(unrestricted, &jurisdiction.as_str().into())
        .map_err(refused)?;
    // The runtime answers another namespace of the same class; every use of it is a
    // method call that fails as a JavaScript error, never a panic.
    Ok(ObjectNamespace::unchecked_from_js(restricted))
}

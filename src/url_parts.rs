//! A page URL as ECS fields: `url.full` and, when it parses, its scheme,
//! domain, port, path, query and fragment. One recipe for every place that
//! writes a URL (beacon and Web Vitals decoders, CSP reports, `scrub_url`).

use std::sync::LazyLock;

use serde_json::Value;

use crate::event::{Event, FieldId};
use crate::schema;

/// `url.full` and its parts when it parses; a part the URL lacks is `None`.
pub fn url_fields(full: &str) -> [(FieldId, Option<Value>); 7] {
    static IDS: LazyLock<[FieldId; 7]> = LazyLock::new(|| {
        [
            schema::URL_FULL,
            schema::URL_SCHEME,
            schema::URL_DOMAIN,
            schema::URL_PORT,
            schema::URL_PATH,
            schema::URL_QUERY,
            schema::URL_FRAGMENT,
        ]
        .map(FieldId::of)
    });
    let url = url::Url::parse(full).ok();
    let url = url.as_ref();
    let ids = &*IDS;
    [
        (ids[0], Some(full.into())),
        (ids[1], url.map(|u| u.scheme().into())),
        (ids[2], url.and_then(|u| u.host_str()).map(Value::from)),
        (ids[3], url.and_then(|u| u.port()).map(Value::from)),
        (ids[4], url.map(|u| u.path().into())),
        (ids[5], url.and_then(|u| u.query()).map(Value::from)),
        (ids[6], url.and_then(|u| u.fragment()).map(Value::from)),
    ]
}

/// Writes `url.full` and, when it parses, its parts on an event; parts the
/// URL lacks are removed (for this event only).
pub fn set_url_fields(event: &mut Event, full: &str) {
    for (id, value) in url_fields(full) {
        match value {
            Some(value) => event.set(id, value),
            None => event.remove_id(id),
        }
    }
}

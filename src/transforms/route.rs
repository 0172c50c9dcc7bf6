//! Transform `route`: splits one stream into named outputs by condition, so a
//! pipeline serving many sites can give each site its own transforms. A
//! downstream subscribes to `inputs = ["<id>.<route>"]`; events matching no
//! route leave on `<id>._unmatched`. There is no default output.
//!
//! An event matching several routes goes to each of them (a copy per extra
//! route); routes are not "first match wins". For exclusive routes, write the
//! conditions so they do not overlap (e.g. `not = {...}` of the others).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Transform;
use crate::conditions::{Condition, ConditionSet};
use crate::config::graph::valid_id;
use crate::config::CheckConfig;
use crate::event::Batch;

/// The output that takes events no route matched.
pub const UNMATCHED: &str = "_unmatched";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Route name → condition. Each name becomes the output `<id>.<name>`
    /// (letters, digits, `_`, `-`; a leading `_` is reserved).
    pub route: BTreeMap<String, Condition>,
}

impl CheckConfig for RouteConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.route.is_empty() {
            problems.push(("route", "needs at least one route, like `route.shop = { field = \"url.domain\", equals = \"shop.example.com\" }`".to_owned()));
        }
        for name in self.route.keys() {
            if !valid_id(name) || name.starts_with('_') {
                problems.push((
                    "route",
                    format!(
                        "route name `{name}`: use letters, digits, `_` and `-`, not starting with `_` (reserved for `{UNMATCHED}`)"
                    ),
                ));
            }
        }
        problems
    }
}

impl RouteConfig {
    /// Route names in output order, then `_unmatched`.
    pub fn outputs(&self) -> Vec<String> {
        self.route
            .keys()
            .cloned()
            .chain([UNMATCHED.to_owned()])
            .collect()
    }

    pub fn build(&self) -> Route {
        Route {
            routes: ConditionSet::new(self.route.values().cloned()),
        }
    }
}

pub struct Route {
    /// In output order; `_unmatched` is the port after the last one.
    routes: ConditionSet,
}

impl Transform for Route {
    fn transform(&mut self, batch: Batch, out: &mut [Batch]) {
        let unmatched = self.routes.len();
        for event in batch {
            // Clone only for the second and later matches; the last match
            // takes the event itself.
            let mut previous: Option<usize> = None;
            self.routes.for_each_match(&event, |port| {
                if let Some(p) = previous {
                    out[p].push(event.clone());
                }
                previous = Some(port);
            });
            out[previous.unwrap_or(unmatched)].push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use serde_json::json;

    fn config(text: &str) -> RouteConfig {
        toml::from_str(text).expect("valid route config")
    }

    fn event(domain: &str, path: &str) -> Event {
        Event::from(json!({"url": {"domain": domain, "path": path}}))
    }

    fn run(config: &RouteConfig, batch: Batch) -> Vec<Vec<(String, String)>> {
        let mut out: Vec<Batch> = config.outputs().iter().map(|_| Vec::new()).collect();
        config.build().transform(batch, &mut out);
        out.into_iter()
            .map(|port| {
                port.iter()
                    .map(|e| {
                        let get = |p| e.get_str(p).unwrap_or_default().to_owned();
                        (get("url.domain"), get("url.path"))
                    })
                    .collect()
            })
            .collect()
    }

    const SITES: &str = r#"
route.shop = { field = "url.domain", equals = "shop.example.com" }
route.blog = { field = "url.domain", equals = "blog.example.com" }
route.admin = { field = "url.path", prefix = "/admin" }
"#;

    #[test]
    fn outputs_are_the_route_names_then_unmatched() {
        assert_eq!(
            config(SITES).outputs(),
            ["admin", "blog", "shop", UNMATCHED]
        );
    }

    #[test]
    fn each_event_goes_to_every_matching_route_or_to_unmatched() {
        let config = config(SITES);
        let got = run(
            &config,
            vec![
                event("shop.example.com", "/cart"),
                event("blog.example.com", "/post/1"),
                event("shop.example.com", "/admin/users"),
                event("other.org", "/"),
                Event::new(),
            ],
        );
        let pair = |d: &str, p: &str| (d.to_owned(), p.to_owned());
        assert_eq!(got[0], [pair("shop.example.com", "/admin/users")], "admin");
        assert_eq!(got[1], [pair("blog.example.com", "/post/1")], "blog");
        assert_eq!(
            got[2],
            [
                pair("shop.example.com", "/cart"),
                pair("shop.example.com", "/admin/users")
            ],
            "shop"
        );
        assert_eq!(got[3], [pair("other.org", "/"), pair("", "")], "unmatched");
    }

    #[test]
    fn names_are_checked() {
        assert!(config("route = {}").check()[0]
            .1
            .contains("at least one route"));
        let bad = config(r#"route._default = { field = "url.path", exists = true }"#).check();
        assert!(bad[0].1.contains("reserved"), "{bad:?}");
        let bad = config(r#"route."a.b" = { field = "url.path", exists = true }"#).check();
        assert!(bad[0].1.contains("route name `a.b`"), "{bad:?}");
        assert!(config(SITES).check().is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_conditions_are_refused() {
        let e = toml::from_str::<RouteConfig>("routes = {}").unwrap_err();
        assert!(e.message().contains("unknown field `routes`"), "{e}");
        let e = toml::from_str::<RouteConfig>(r#"route.a = { field = "url.path", equal = "/" }"#)
            .unwrap_err();
        assert!(e.message().contains("unknown field `equal`"), "{e}");
    }
}

//! The legacy `report-uri` wire format: `{"csp-report": {kebab-case keys}}`,
//! one violation per request.

use serde_json::Value;

use super::noise::NoiseRules;
use super::normalize::{apply_csp, base_event};
use super::{invalid, parse_utf8, Decoded, Format, Report, ReportFacts, ReportLimits, CSP_KIND};
use crate::schema;
use crate::sources::decode_error::{check_json_shape, json_error, DecodeError};
use crate::sources::json_scan::keys_without_nul;

/// `POST report-uri`: `{"csp-report": {...}}`, one violation.
pub fn decode_report_uri(
    body: &[u8],
    facts: &ReportFacts<'_>,
    limits: &ReportLimits,
    noise: &NoiseRules,
) -> Result<Decoded, DecodeError> {
    parse_utf8(body)?;
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| json_error(&e, limits.max_depth))?;
    check_json_shape(&value, limits.max_string_bytes, limits.max_depth)?;
    keys_without_nul(body, &mut value);
    let Value::Object(mut wrapper) = value else {
        return Err(invalid(
            "a report-uri body is a JSON object `{\"csp-report\": {...}}`",
        ));
    };
    let report = match wrapper.remove(Format::ReportUri.body_key()) {
        Some(Value::Object(report)) => report,
        Some(_) => return Err(invalid("`csp-report` must be an object")),
        None if wrapper.is_empty() => return Err(invalid("missing `csp-report`")),
        None => {
            return Err(invalid(
                "missing `csp-report` (Reporting API arrays go to the reporting-api path)",
            ))
        }
    };
    // One report per request: the first.
    let mut event = base_event(facts, limits, facts.user_agent, facts.received_at_ms, 0);
    // What is left of the wrapper is the report's own (`rum.extra`).
    let noisy = apply_csp(&mut event, report, wrapper, Format::ReportUri, None, noise)?;
    let page_url = event.get_str(schema::URL_FULL).map(str::to_owned);
    // A report is its own context: enrichment sees it as it sees a beacon's.
    event.hoist_into_context();
    Ok(Decoded {
        reports: vec![Report {
            event,
            kind: CSP_KIND,
            noise: noisy,
        }],
        page_url,
    })
}

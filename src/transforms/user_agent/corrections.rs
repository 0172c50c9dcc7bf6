//! woothee's answer, and what it gets wrong for today's browsers: in-app
//! and headless browsers, Samsung Internet, HTTP libraries, Android models
//! and iOS devices.

use serde_json::Value;

use super::client_hints::{apply_hints, ClientHints};
use super::{UserAgentInfo, SYNTHETIC_MARKERS};

/// The parsing itself, without cache or events: UA string + hints → fields.
pub struct UserAgentParser {
    woothee: woothee::parser::Parser,
    /// Built-in and configured markers, lowercased.
    markers: Vec<String>,
    pub(super) use_hints: bool,
}

const UNKNOWN: &str = woothee::woothee::VALUE_UNKNOWN;

fn known(s: &str) -> Option<&str> {
    (!s.is_empty() && s != UNKNOWN).then_some(s)
}

/// Bytes of a User-Agent read by the parser. Real UAs stay under 300
/// bytes (in-app browsers with all their tokens under 1 KiB); woothee's
/// scans are linear in the length, so a UA as long as the header limit
/// (64 KiB) cost as much as 300 ordinary ones, on every beacon: too long to
/// be cached, it is parsed each time.
pub const MAX_PARSED_UA_BYTES: usize = 1024;

/// The first `MAX_PARSED_UA_BYTES` of `ua`, cut at a character boundary.
fn head(ua: &str) -> &str {
    let mut end = ua.len().min(MAX_PARSED_UA_BYTES);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    &ua[..end]
}

/// The category names woothee uses, as static strings.
fn category(name: &str) -> Option<&'static str> {
    [
        "pc",
        "smartphone",
        "mobilephone",
        "crawler",
        "appliance",
        "misc",
    ]
    .into_iter()
    .find(|c| *c == name)
}

impl UserAgentParser {
    pub fn new(extra_markers: &[String], use_hints: bool) -> Self {
        let markers = SYNTHETIC_MARKERS
            .iter()
            .map(|m| (*m).to_owned())
            .chain(extra_markers.iter().map(|m| m.trim().to_lowercase()))
            .collect();
        Self {
            woothee: woothee::parser::Parser::new(),
            markers,
            use_hints,
        }
    }

    pub fn parse(&self, ua: &str, hints: Option<&Value>) -> UserAgentInfo {
        let ua = head(ua);
        let parsed = self.woothee.parse(ua).unwrap_or_default();
        let mut info = UserAgentInfo {
            category: category(parsed.category),
            ..UserAgentInfo::default()
        };
        let lower = ua.to_lowercase();
        info.synthetic = self.markers.iter().any(|m| lower.contains(m.as_str()));

        if info.category == Some("crawler") {
            // A crawler imitating a phone is still a crawler: no OS or device.
            let name = known(parsed.name);
            info.version = known(parsed.version)
                .map(str::to_owned)
                .or_else(|| name.and_then(|n| version_after(ua, &format!("{n}/"))));
            info.name = name.map(str::to_owned);
            info.synthetic = true;
            return info;
        }

        self.browser(ua, &parsed, &mut info);
        os_and_device(ua, &parsed, &mut info);
        if parsed.name == "HTTP Library" {
            // Scripts, not browsers: `curl/8.7.1` → curl 8.7.1.
            let product = ua.split(['/', ' ']).next().unwrap_or("");
            info.name = known(product).map(str::to_owned);
            info.version = version_after(ua, &format!("{product}/"));
            info.synthetic = true;
        }
        if let Some(hints) = hints.filter(|_| self.use_hints) {
            apply_hints(&ClientHints::from_value(hints), &mut info);
        }
        info
    }

    fn browser(
        &self,
        ua: &str,
        parsed: &woothee::parser::WootheeResult<'_>,
        info: &mut UserAgentInfo,
    ) {
        let (name, version) = if let Some(v) = version_after(ua, "FBAV/") {
            // Facebook's in-app browser; woothee sees a WebView or nothing.
            ("Facebook", Some(v))
        } else if let Some(v) = version_after(ua, " Instagram ") {
            ("Instagram", Some(v))
        } else if let Some(v) = version_after(ua, "HeadlessChrome/") {
            ("HeadlessChrome", Some(v))
        } else if let Some(v) = version_after(ua, "EdgA/").or_else(|| version_after(ua, "EdgiOS/"))
        {
            ("Edge", Some(v))
        } else {
            let name = match parsed.name {
                "SamsungBrowser" => "Samsung Internet",
                other => other,
            };
            (name, known(parsed.version).map(str::to_owned))
        };
        info.name = known(name).map(str::to_owned);
        info.version = version;
    }
}

/// woothee's OS label → ECS OS name and version, and the device when the OS
/// names it (iPhone, iPad) or the UA carries an Android model.
fn os_and_device(ua: &str, parsed: &woothee::parser::WootheeResult<'_>, info: &mut UserAgentInfo) {
    let os_version = known(&parsed.os_version).map(|v| v.replace('_', "."));
    let (name, version) = match parsed.os {
        label
            if label.starts_with("Windows ")
                && label != "Windows Phone OS"
                && label != "Windows CE" =>
        {
            let version = label.trim_start_matches("Windows ");
            (
                "Windows",
                (version != "UNKNOWN Ver").then(|| version.to_owned()),
            )
        }
        "Windows Phone OS" => ("Windows Phone", os_version),
        "Mac OSX" => ("macOS", os_version),
        "iPhone" | "iPad" | "iPod" => {
            info.device_name = Some(parsed.os.to_owned());
            ("iOS", os_version)
        }
        // Frozen at 14541.0.0 (or similar) in reduced UAs: says nothing.
        "ChromeOS" => ("ChromeOS", None),
        "Android" => {
            info.device_name = android_model(ua);
            ("Android", os_version)
        }
        other => match known(other) {
            Some(name) => (name, os_version),
            None => return,
        },
    };
    info.os_name = Some(name.to_owned());
    info.os_version = version;
}

/// The model in `(Linux; Android 14; Pixel 8 Build/AP1A...; wv)`. Reduced UAs
/// say `K` instead; Samsung prefixes `SAMSUNG `.
pub(super) fn android_model(ua: &str) -> Option<String> {
    let comment = first_comment(ua)?;
    let mut parts = comment.split(';').map(str::trim);
    parts.find(|p| p.starts_with("Android"))?;
    // Old UAs put a locale first: `Android 4.0.3; ko-kr; LG-L160L Build/...`.
    let is_locale = |p: &str| {
        let b = p.as_bytes();
        b.len() == 5 && b[..2].iter().all(u8::is_ascii_alphabetic) && matches!(b[2], b'-' | b'_')
    };
    let model = parts.find(|p| !is_locale(p))?;
    let model = model.split(" Build/").next().unwrap_or(model).trim();
    let model = model
        .strip_prefix("SAMSUNG ")
        .or_else(|| model.strip_prefix("Samsung "))
        .unwrap_or(model);
    match model {
        "" | "K" | "wv" | "Mobile" | "Tablet" | "U" => None,
        m if m.starts_with("rv:") => None,
        m => Some(m.to_owned()),
    }
}

/// Inside the first parenthesized comment, nested parentheses kept.
fn first_comment(ua: &str) -> Option<&str> {
    let start = ua.find('(')? + 1;
    let mut depth = 1;
    for (i, c) in ua[start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&ua[start..start + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The dotted version number right after `marker`, if any.
fn version_after(ua: &str, marker: &str) -> Option<String> {
    let rest = &ua[ua.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let version = rest[..end].trim_end_matches('.');
    (!version.is_empty() && version.starts_with(|c: char| c.is_ascii_digit()))
        .then(|| version.to_owned())
}

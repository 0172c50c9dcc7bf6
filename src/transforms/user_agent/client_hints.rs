//! User-Agent Client Hints: what the reduced UA hides (real brand, full
//! version, Windows 11, the Android model), read from either shape they
//! arrive in, and laid over what the UA string gave.

use serde_json::Value;

use super::UserAgentInfo;

/// User-Agent Client Hints, from either shape `rum.ua_hints` takes: the
/// browser's `navigator.userAgentData` (high-entropy values) or the request's
/// `Sec-CH-UA*` headers (structured-field strings).
#[derive(Debug, Default, PartialEq)]
pub struct ClientHints {
    pub brands: Vec<(String, String)>,
    pub full_versions: Vec<(String, String)>,
    pub mobile: Option<bool>,
    pub platform: Option<String>,
    pub platform_version: Option<String>,
    pub model: Option<String>,
}

impl ClientHints {
    pub fn from_value(hints: &Value) -> Self {
        let text = |key: &str| {
            hints
                .get(key)
                .and_then(Value::as_str)
                .map(|s| unquote(s.trim()).to_owned())
                .filter(|s| !s.is_empty())
        };
        let list = |object_key: &str, header_key: &str| match hints.get(object_key) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| {
                    let brand = item.get("brand")?.as_str()?;
                    let version = item.get("version")?.as_str()?;
                    Some((brand.to_owned(), version.to_owned()))
                })
                .collect(),
            _ => hints
                .get(header_key)
                .and_then(Value::as_str)
                .map(parse_brand_list)
                .unwrap_or_default(),
        };
        let mobile = match hints.get("mobile") {
            Some(Value::Bool(b)) => Some(*b),
            _ => match hints
                .get("sec_ch_ua_mobile")
                .and_then(Value::as_str)
                .map(str::trim)
            {
                Some("?1") => Some(true),
                Some("?0") => Some(false),
                _ => None,
            },
        };
        Self {
            brands: list("brands", "sec_ch_ua"),
            full_versions: list("fullVersionList", "sec_ch_ua_full_version_list"),
            mobile,
            platform: text("platform").or_else(|| text("sec_ch_ua_platform")),
            platform_version: text("platformVersion")
                .or_else(|| text("sec_ch_ua_platform_version")),
            model: text("model").or_else(|| text("sec_ch_ua_model")),
        }
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// `"Chromium";v="124", "Not)A;Brand";v="99"` → [(Chromium, 124), ...]. Brand
/// names may hold `;` and `,` inside their quotes (GREASE brands do).
pub(super) fn parse_brand_list(header: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = header.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        if chars.peek() != Some(&'"') {
            break;
        }
        chars.next();
        let Some(brand) = read_quoted(&mut chars) else {
            break;
        };
        let mut version = String::new();
        // Parameters up to the next list separator.
        while let Some(c) = chars.next() {
            match c {
                ',' => break,
                ';' => {
                    while chars.next_if(|c| c.is_whitespace()).is_some() {}
                    let mut key = String::new();
                    while let Some(c) = chars.next_if(|c| *c != '=' && *c != ';' && *c != ',') {
                        key.push(c);
                    }
                    if chars.next_if_eq(&'=').is_some() {
                        let value = if chars.next_if_eq(&'"').is_some() {
                            read_quoted(&mut chars).unwrap_or_default()
                        } else {
                            let mut token = String::new();
                            while let Some(c) = chars.next_if(|c| *c != ';' && *c != ',') {
                                token.push(c);
                            }
                            token.trim().to_owned()
                        };
                        if key.trim() == "v" {
                            version = value;
                        }
                    }
                }
                _ => {}
            }
        }
        out.push((brand, version));
    }
    out
}

/// A quoted string's content after its opening quote; `None` if it never closes.
fn read_quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// Chrome's GREASE brands ("Not-A.Brand", "Not)A;Brand", "Not/A)Brand"...).
pub(super) fn is_grease(brand: &str) -> bool {
    let letters: String = brand
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    letters == "notabrand"
}

pub(super) fn apply_hints(hints: &ClientHints, info: &mut UserAgentInfo) {
    let real = |list: &[(String, String)]| -> Option<(String, String)> {
        let mut brands = list.iter().filter(|(b, _)| !b.is_empty() && !is_grease(b));
        let all: Vec<_> = brands.by_ref().collect();
        all.iter()
            .find(|(b, _)| b != "Chromium")
            .or_else(|| all.first())
            .map(|(b, v)| (b.clone(), v.clone()))
    };
    let chosen = real(&hints.full_versions).or_else(|| real(&hints.brands));
    // An in-app browser named by its UA (Facebook, Instagram) says more than
    // the WebView brand its hints carry.
    let in_app = matches!(info.name.as_deref(), Some("Facebook" | "Instagram"));
    if let Some((brand, version)) = chosen.filter(|_| !in_app) {
        if brand == "HeadlessChrome" {
            info.synthetic = true;
        }
        info.name = Some(
            match brand.as_str() {
                "Google Chrome" => "Chrome",
                "Microsoft Edge" => "Edge",
                other => other,
            }
            .to_owned(),
        );
        info.version = (!version.is_empty()).then_some(version);
    }

    let platform = hints.platform.as_deref().and_then(|p| match p {
        "Unknown" => None,
        "Chrome OS" | "Chromium OS" => Some("ChromeOS"),
        "Mac OS X" => Some("macOS"),
        other => Some(other),
    });
    if let Some(platform) = platform {
        if info.os_name.as_deref() != Some(platform) {
            info.os_name = Some(platform.to_owned());
            info.os_version = None;
        }
        if let Some(version) = hints.platform_version.as_deref() {
            let version = if platform == "Windows" {
                windows_release(version)
            } else {
                trim_zero_components(version)
            };
            if version.is_some() {
                info.os_version = version;
            }
        }
    }
    if let Some(model) = &hints.model {
        info.device_name = Some(model.clone());
    }
}

/// `Sec-CH-UA-Platform-Version` on Windows is the UniversalApiContract
/// version: 13 and above is Windows 11, 1–10 is Windows 10, and 0.x are 7,
/// 8 and 8.1.
pub(super) fn windows_release(platform_version: &str) -> Option<String> {
    let mut parts = platform_version.split('.');
    let major: u32 = parts.next()?.trim().parse().ok()?;
    let minor: u32 = parts
        .next()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0);
    let release = match (major, minor) {
        (13.., _) => "11",
        (1..=12, _) => "10",
        (0, 3) => "8.1",
        (0, 2) => "8",
        (0, 1) => "7",
        _ => return None,
    };
    Some(release.to_owned())
}

/// `14.0.0` → `14`, `13.1.0` → `13.1`; an empty version is none.
fn trim_zero_components(version: &str) -> Option<String> {
    let mut parts: Vec<&str> = version.trim().split('.').collect();
    while parts.len() > 1 && parts.last() == Some(&"0") {
        parts.pop();
    }
    let out = parts.join(".");
    (!out.is_empty()).then_some(out)
}

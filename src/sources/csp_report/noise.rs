//! Noise rules: which CSP violations were caused by browser extensions or
//! by software that injects into every page, not by the site.

/// URI schemes of browser extensions and other things the site did not do.
pub const NOISE_SCHEMES: &[&str] = &[
    "chrome-extension",
    "moz-extension",
    "safari-extension",
    "safari-web-extension",
    "ms-browser-extension",
    "webkit-masked-url",
    "about",
];

/// Decides which violations are noise: caused by extensions or by software
/// that injects into every page (antivirus, translators), not by the site.
#[derive(Debug, Clone)]
pub struct NoiseRules {
    /// Lower-case host names; a host matches itself and its subdomains.
    hosts: Vec<String>,
}

impl NoiseRules {
    pub fn new(hosts: &[String]) -> Self {
        Self {
            hosts: hosts
                .iter()
                .map(|h| {
                    h.trim()
                        .trim_start_matches("*.")
                        .trim_end_matches('.')
                        .to_ascii_lowercase()
                })
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    /// Is a blocked or source URI noise? Browsers write non-HTTP sources as
    /// a bare scheme (`chrome-extension`) or a full URL; both are matched.
    pub fn is_noise(&self, uri: &str) -> bool {
        let scheme = uri
            .split(':')
            .next()
            .unwrap_or(uri)
            .trim()
            .to_ascii_lowercase();
        if NOISE_SCHEMES.contains(&scheme.as_str()) {
            return true;
        }
        if self.hosts.is_empty() {
            return false;
        }
        let Ok(url) = url::Url::parse(uri) else {
            return false;
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.hosts.iter().any(|h| {
            host == *h
                || (host.len() > h.len()
                    && host.ends_with(h.as_str())
                    && host.as_bytes()[host.len() - h.len() - 1] == b'.')
        })
    }
}

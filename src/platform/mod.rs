//! Platform implementations of the adapter seams.

pub mod amazon;
pub mod memory;
pub mod reddit;

/// An HTTP client builder for an API at `base_url`: system proxies
/// (`HTTPS_PROXY`, …) apply, except to loopback hosts — the fake servers that
/// tests and the demo start — so a developer's proxy settings cannot send test
/// traffic elsewhere.
pub(crate) fn http_client_builder(base_url: &str) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    if is_loopback(base_url) {
        builder.no_proxy()
    } else {
        builder
    }
}

fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_hosts_bypass_proxies() {
        for url in [
            "http://127.0.0.1:8080/api",
            "http://[::1]:9/",
            "http://localhost/",
        ] {
            assert!(super::is_loopback(url), "{url}");
        }
        for url in [
            "https://ads-api.reddit.com/api/v3",
            "https://10.0.0.1/",
            "not a url",
        ] {
            assert!(!super::is_loopback(url), "{url}");
        }
    }
}

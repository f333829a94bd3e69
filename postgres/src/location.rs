//! The connection string, kept apart from what is printed: [`Location`].

use std::fmt;

/// The printable form of a connection string (the driver keeps the string
/// itself); `Debug`, `Display`, [`Location::redacted`] and every message
/// passed through [`Location::scrub`] carry `***` instead.
#[derive(Clone)]
pub(crate) struct Location {
    redacted: String,
    /// The password as written and as decoded, to scrub out of messages.
    secrets: Vec<String>,
}

impl Location {
    pub(crate) fn new(text: &str, decoded_password: Option<&[u8]>) -> Location {
        let mut secrets = Vec::new();
        if let Some(p) = decoded_password {
            secrets.push(String::from_utf8_lossy(p).into_owned());
        }
        if let Some(p) = written_password(text) {
            secrets.push(p);
        }
        // Short ones would scrub ordinary words out of messages; they are
        // still left out of the printed location.
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Location {
            redacted: redact(text),
            secrets,
        }
    }

    /// The connection string with its password replaced by `***`.
    pub(crate) fn redacted(&self) -> &str {
        &self.redacted
    }

    /// `message` with every occurrence of the password replaced by `***`
    /// (a driver's message could quote the string it was given).
    pub(crate) fn scrub(&self, message: &str) -> String {
        let mut message = message.to_string();
        for secret in &self.secrets {
            message = message.replace(secret.as_str(), "***");
        }
        message
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// The password as it appears in `text`, in either form libpq accepts.
fn written_password(text: &str) -> Option<String> {
    if let Some((start, end)) = url_password(text) {
        return Some(text[start..end].to_string());
    }
    keyword_passwords(text)
        .first()
        .map(|&(s, e)| text[s..e].to_string())
}

/// `text` with the password replaced by `***`: the `user:password@` of a
/// `postgres://` URL, any `password=` parameter of its query, or the
/// `password=` of a `key=value` string.
pub(crate) fn redact(text: &str) -> String {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    if let Some(span) = url_password(text) {
        spans.push(span);
    }
    spans.extend(keyword_passwords(text));
    spans.sort();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        if start < at {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str("***");
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The byte span of the password in a `postgres://user:password@host` URL.
fn url_password(text: &str) -> Option<(usize, usize)> {
    let scheme_end = text.find("://")?;
    if !text[..scheme_end].starts_with("postgres") {
        return None;
    }
    let authority = scheme_end + 3;
    let rest = &text[authority..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    let colon = rest[..at].find(':')?;
    Some((authority + colon + 1, authority + at))
}

/// The byte spans of the values of `password=` parameters (URL query or
/// `key=value` form; a value may be single-quoted).
fn keyword_passwords(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find("password") {
        let key = from + found;
        from = key + "password".len();
        let before = text[..key].chars().next_back();
        if !matches!(before, None | Some(' ' | '?' | '&' | '\t' | '\n')) {
            continue;
        }
        let mut i = from;
        let bytes = text.as_bytes();
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let start = i;
        let end = if i < bytes.len() && bytes[i] == b'\'' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'\'' {
                if bytes[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            (j + 1).min(bytes.len())
        } else {
            let mut j = i;
            while j < bytes.len() && !matches!(bytes[j], b' ' | b'&' | b'\t' | b'\n') {
                j += 1;
            }
            j
        };
        if end > start {
            spans.push((start, end));
        }
        from = end.max(from);
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::{redact, Location};

    #[test]
    fn passwords_are_replaced_in_every_form() {
        assert_eq!(
            redact("postgres://ads:s3cret@db.example:5432/adsync?sslmode=disable"),
            "postgres://ads:***@db.example:5432/adsync?sslmode=disable"
        );
        assert_eq!(
            redact("postgresql://ads@db/adsync?password=s3cret&application_name=x"),
            "postgresql://ads@db/adsync?password=***&application_name=x"
        );
        assert_eq!(
            redact("host=db user=ads password='s 3cret' dbname=adsync"),
            "host=db user=ads password=*** dbname=adsync"
        );
        assert_eq!(
            redact("host=db password = s3cret"),
            "host=db password = ***"
        );
        assert_eq!(redact("postgres://db/adsync"), "postgres://db/adsync");
        // An `@` in the password (written encoded or not) stays hidden.
        assert_eq!(
            redact("postgres://ads:p@ss@db/adsync"),
            "postgres://ads:***@db/adsync"
        );
    }

    #[test]
    fn messages_are_scrubbed_of_the_written_and_the_decoded_password() {
        let location = Location::new("postgres://ads:p%40ssword@db/x", Some(b"p@ssword"));
        assert_eq!(
            location.scrub("bad p@ssword and p%40ssword"),
            "bad *** and ***"
        );
        assert_eq!(format!("{location:?}"), "postgres://ads:***@db/x");
    }
}
